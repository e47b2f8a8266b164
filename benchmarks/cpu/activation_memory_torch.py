# PyTorch twin of activation_memory: bytes of the distinct storages autograd saves during a ResNet-50 forward
# (saved_tensors_hooks), parameters and the input image excluded, for the network of model_step_torch.py.
#   python3 activation_memory_torch.py [batch] [bf16|f32]
import os, sys
import torch
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model_step_torch import ResNet50

batch = int(sys.argv[1]) if len(sys.argv) > 1 else 8
dtype = torch.float32 if len(sys.argv) > 2 and sys.argv[2] == "f32" else torch.bfloat16
model = ResNet50().to(memory_format=torch.channels_last).to(dtype).train()
x = torch.randn(batch, 3, 224, 224).to(dtype).to(memory_format=torch.channels_last)
params = {p.data_ptr() for p in model.parameters()}
seen, total = {x.data_ptr()} | params, 0


def pack(t):
    global total
    storage = t.untyped_storage() if hasattr(t, "untyped_storage") else t.storage()
    if storage.data_ptr() not in seen:
        seen.add(storage.data_ptr())
        total += storage.nbytes()
    return t


with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
    model(x)
print(f"torch {torch.__version__} resnet50 batch {batch} {dtype}: saved activations {total / 2**20:.1f} MiB")
