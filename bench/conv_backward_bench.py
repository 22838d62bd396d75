"""PyTorch counterpart of crates/maskrcnn-kernels/examples/conv_backward_bench.rs: a torchvision
ResNet-50 body (conv1 .. layer4, FrozenBatchNorm2d) at batch 1; forward alone (no_grad) and
forward + backward of sum(layer4) w.r.t. every conv weight. Median of RUNS timed runs after one
warm-up, wall time and process CPU time (steadier than wall time on a loaded machine).

Usage: python conv_backward_bench.py [SIZE=512] [RUNS=5] [THREADS=1]
"""
import statistics
import sys
import time

import torch
import torchvision
from torchvision.ops.misc import FrozenBatchNorm2d


def main() -> None:
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 512
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    torch.set_num_threads(threads)
    torch.manual_seed(0)

    net = torchvision.models.resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
    body = torch.nn.Sequential(
        net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4
    ).eval()
    x = torch.randn(1, 3, size, size)

    forward, forward_cpu = [], []
    with torch.no_grad():
        for run in range(runs + 1):
            cpu_start, start = time.process_time(), time.perf_counter()
            body(x).sum().item()
            if run > 0:
                forward.append(time.perf_counter() - start)
                forward_cpu.append(time.process_time() - cpu_start)

    fwd_bwd, fwd_bwd_cpu = [], []
    for run in range(runs + 1):
        body.zero_grad(set_to_none=True)
        cpu_start, start = time.process_time(), time.perf_counter()
        body(x).sum().backward()
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu_start
        assert net.conv1.weight.grad is not None and torch.isfinite(net.conv1.weight.grad).all()
        if run > 0:
            fwd_bwd.append(elapsed)
            fwd_bwd_cpu.append(cpu)

    fmt = lambda v: ",".join(f"{s:.3f}" for s in v)
    print(
        f"torch {torch.__version__} threads={torch.get_num_threads()} size={size} "
        f"forward_median_s={statistics.median(forward):.3f} fwd_bwd_median_s={statistics.median(fwd_bwd):.3f} "
        f"forward_cpu_median_s={statistics.median(forward_cpu):.3f} fwd_bwd_cpu_median_s={statistics.median(fwd_bwd_cpu):.3f} "
        f"forward_runs=[{fmt(forward)}] fwd_bwd_runs=[{fmt(fwd_bwd)}]"
    )


if __name__ == "__main__":
    main()
