# PyTorch CPU twin of model_step_bench: the same ResNet-50 (SGD momentum) and Transformer-big (Adam, label
# smoothing 0.1, tied 32k vocabulary) training steps as shared/anchors/*_anchor.py, on the CPU and without
# torchvision (Debian's python3-torch ships none), so ResNet-50 v1.5 is written out here as torchvision builds it.
#
#   python3 model_step_torch.py --model resnet50 --batch 16 --warmup 2 --steps 5 [--channels_last]
#   python3 model_step_torch.py --model transformer_big --batch 16 --seq 32 --warmup 2 --steps 5
import argparse, math, os, time
import torch, torch.nn as nn


class Bottleneck(nn.Module):
    def __init__(s, cin, width, stride):
        super().__init__()
        cout = width * 4
        s.conv1 = nn.Conv2d(cin, width, 1, bias=False); s.bn1 = nn.BatchNorm2d(width)
        s.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False); s.bn2 = nn.BatchNorm2d(width)
        s.conv3 = nn.Conv2d(width, cout, 1, bias=False); s.bn3 = nn.BatchNorm2d(cout)
        s.relu = nn.ReLU(inplace=True)
        s.downsample = None
        if stride != 1 or cin != cout:
            s.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(s, x):
        idt = x if s.downsample is None else s.downsample(x)
        y = s.relu(s.bn1(s.conv1(x)))
        y = s.relu(s.bn2(s.conv2(y)))
        return s.relu(s.bn3(s.conv3(y)) + idt)


class ResNet50(nn.Module):
    def __init__(s, classes=1000):
        super().__init__()
        s.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False); s.bn1 = nn.BatchNorm2d(64)
        s.relu = nn.ReLU(inplace=True); s.maxpool = nn.MaxPool2d(3, 2, 1)
        layers, cin = [], 64
        for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            stage = []
            for b in range(blocks):
                stage.append(Bottleneck(cin, width, stride if b == 0 else 1)); cin = width * 4
            layers.append(nn.Sequential(*stage))
        s.layer1, s.layer2, s.layer3, s.layer4 = layers
        s.avgpool = nn.AdaptiveAvgPool2d(1); s.fc = nn.Linear(2048, classes)

    def forward(s, x):
        x = s.maxpool(s.relu(s.bn1(s.conv1(x))))
        x = s.layer4(s.layer3(s.layer2(s.layer1(x))))
        return s.fc(torch.flatten(s.avgpool(x), 1))


class TBig(nn.Module):
    def __init__(s, V=32768, d=1024, h=16, ff=4096, L=6, drop=0.1):
        super().__init__()
        s.emb = nn.Embedding(V, d); s.d = d
        # N(0, d^-1/2) as kolo's model (fairseq's shared-embedding init), so both sides train the same model;
        # nn.Embedding's N(0, 1) tied to the output starts from logits of spread ~sqrt(d) (loss ~76).
        nn.init.normal_(s.emb.weight, 0.0, d ** -0.5)
        s.tr = nn.Transformer(d, h, L, L, ff, drop, batch_first=True, norm_first=False)
        s.out = nn.Linear(d, V, bias=False); s.out.weight = s.emb.weight

    def forward(s, src, tgt):
        sc = math.sqrt(s.d)
        mask = nn.Transformer.generate_square_subsequent_mask(tgt.size(1))
        h = s.tr(s.emb(src) * sc, s.emb(tgt) * sc, tgt_mask=mask)
        return s.out(h)


def time_steps(step, warmup, steps, unit, items):
    for i in range(warmup):
        t = time.perf_counter(); loss = step()
        print(f"warmup {i + 1}: {time.perf_counter() - t:.3f} s loss {loss:.4f}", flush=True)
    secs, cpu = [], []
    for i in range(steps):
        c = time.process_time(); t = time.perf_counter(); loss = step()
        secs.append(time.perf_counter() - t); cpu.append(time.process_time() - c)
        print(f"step {i + 1}: {secs[-1]:.3f} s (cpu {cpu[-1]:.3f} s)  {items / secs[-1]:.2f} {unit}  loss {loss:.4f}",
              flush=True)
    print(f"best {unit}: {items / min(secs):.2f} (step {min(secs):.3f} s)")
    print(f"cpu seconds per step (median): {sorted(cpu)[len(cpu) // 2]:.3f}")
    return sorted(secs)[len(secs) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet50", choices=["resnet50", "transformer_big"])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=32)
    ap.add_argument("--image_size", type=int, default=224)
    ap.add_argument("--vocab", type=int, default=32768)
    ap.add_argument("--channels_last", action="store_true")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--profile", action="store_true", help="print torch.autograd.profiler's table for one step")
    a = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count())))
    torch.manual_seed(0)
    if a.model == "resnet50":
        m = ResNet50()
        x = torch.randn(a.batch, 3, a.image_size, a.image_size)
        if a.channels_last:
            m = m.to(memory_format=torch.channels_last); x = x.to(memory_format=torch.channels_last)
        y = torch.randint(0, 1000, (a.batch,))
        opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-5)
        lossf = nn.CrossEntropyLoss()
        def step():
            loss = lossf(m(x), y)
            opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
            return loss.item()
        print(f"torch {torch.__version__} resnet50 batch={a.batch} image={a.image_size} "
              f"channels_last={int(a.channels_last)} threads={torch.get_num_threads()}", flush=True)
        unit, items = "img/s", a.batch
    else:
        m = TBig(V=a.vocab)
        src = torch.randint(3, a.vocab, (a.batch, a.seq)); tgt = torch.randint(3, a.vocab, (a.batch, a.seq))
        opt = torch.optim.Adam(m.parameters(), lr=1e-3, betas=(0.9, 0.98), eps=1e-9)
        lossf = nn.CrossEntropyLoss(label_smoothing=0.1)
        def step():
            loss = lossf(m(src, tgt).flatten(0, 1), tgt.flatten())
            opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
            return loss.item()
        nparams = sum(p.numel() for p in m.parameters())
        print(f"torch {torch.__version__} transformer_big batch={a.batch}x{a.seq} vocab={a.vocab} "
              f"params={nparams:,} threads={torch.get_num_threads()}", flush=True)
        unit, items = "tgt tok/s", a.batch * a.seq
    m.train()
    if a.profile:
        step()
        with torch.autograd.profiler.profile() as prof:
            step()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30))
        return
    med = time_steps(step, a.warmup, a.steps, unit, items)
    print(f"total {unit}: {items / med:.2f} (median step {med:.3f} s)", flush=True)


if __name__ == "__main__":
    main()
