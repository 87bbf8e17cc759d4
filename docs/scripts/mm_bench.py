import time, torch, torch.nn.functional as F
torch.set_num_threads(1)
from mini_t2i.transformer.quantize import Fp16Linear, Int8Linear
def best(f, n=200):
    for _ in range(10): f()
    ts = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n): f()
        ts.append((time.perf_counter() - t0) / n)
    return min(ts)
for out_f, in_f in [(1536, 512), (2752, 512), (512, 1376), (16384, 512)]:
    w = torch.randn(out_f, in_f) * 0.02
    for rows in (1, 2):
        x = torch.randn(rows, in_f)
        f16 = Fp16Linear(w); i8 = Int8Linear(w); wb = w.bfloat16(); wt = w.t().contiguous()
        xb = x.bfloat16()
        r = {
            'fp32': best(lambda: F.linear(x, w)),
            'fp16': best(lambda: f16(x)),
            'int8': best(lambda: i8(x)),
            'bf16': best(lambda: F.linear(x.bfloat16(), wb).float()),
            'bf16_mm': best(lambda: torch.mm(xb, wb.t())),
        }
        bytes_ = {'fp32': 4, 'fp16': 2, 'int8': 1, 'bf16': 2, 'bf16_mm': 2}
        print(out_f, in_f, rows, ' '.join(f"{k}={v*1e6:.0f}us({out_f*in_f*bytes_[k]/v/1e9:.0f}GB/s)" for k, v in r.items()))
