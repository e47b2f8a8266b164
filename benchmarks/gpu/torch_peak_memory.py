# PyTorch's peak device memory for the two GPU goals' workloads alone (the anchors' peak_mem also holds their
# earlier TF32 run): ResNet-50 batch 256 (bf16 autocast, channels_last, SGD momentum) and Transformer-big
# 256x64 (bf16 autocast, Adam, label smoothing), the same models and steps as ../shared/anchors.
#   python3 benchmarks/gpu/torch_peak_memory.py resnet|transformer
import math, sys, time, torch, torch.nn as nn

def report(name, rate, unit):
    gib = 2 ** 30
    print(f"torch {name}: {rate:.0f} {unit}, peak allocated {torch.cuda.max_memory_allocated() / gib:.2f} GiB, "
          f"peak reserved {torch.cuda.max_memory_reserved() / gib:.2f} GiB", flush=True)

def timed(step, warm, steps):
    for _ in range(warm): step()
    torch.cuda.synchronize(); t = time.perf_counter()
    for _ in range(steps): step()
    torch.cuda.synchronize(); return time.perf_counter() - t

def resnet():
    import torchvision
    torch.backends.cudnn.benchmark = True
    m = torchvision.models.resnet50().cuda().to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-5)
    x = torch.randn(256, 3, 224, 224, device="cuda").to(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (256,), device="cuda")
    lossf = nn.CrossEntropyLoss()
    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = lossf(m(x), y)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    dt = timed(step, 15, 30)
    report("resnet50 b256 bf16 channels_last", 256 * 30 / dt, "img/s")

class TBig(nn.Module):
    def __init__(s, V=32768, d=1024, h=16, ff=4096, L=6, drop=0.1):
        super().__init__(); s.emb = nn.Embedding(V, d); s.d = d
        s.tr = nn.Transformer(d, h, L, L, ff, drop, batch_first=True, norm_first=False)
        s.out = nn.Linear(d, V, bias=False); s.out.weight = s.emb.weight
    def forward(s, src, tgt):
        mask = nn.Transformer.generate_square_subsequent_mask(tgt.size(1), device=tgt.device)
        sc = math.sqrt(s.d)
        return s.out(s.tr(s.emb(src) * sc, s.emb(tgt) * sc, tgt_mask=mask, tgt_is_causal=True))

def transformer():
    m = TBig().cuda()
    opt = torch.optim.Adam(m.parameters(), lr=1e-3, betas=(0.9, 0.98), eps=1e-9)
    src = torch.randint(0, 32768, (256, 64), device="cuda"); tgt = torch.randint(0, 32768, (256, 64), device="cuda")
    lossf = nn.CrossEntropyLoss(label_smoothing=0.1)
    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = lossf(m(src, tgt).flatten(0, 1).float(), tgt.flatten())
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    dt = timed(step, 10, 20)
    report("transformer-big 256x64 bf16", 256 * 64 * 20 / dt, "tgt tok/s")

{"resnet": resnet, "transformer": transformer}[sys.argv[1]]()
