"""torchvision's ResNet-18 classification network as a backbone: its IntermediateLayerGetter
features (layer1..layer4) for weights both sides compute from one integer formula, so the fixture
holds only the key list, the input and the four feature maps (not 47 MB of weights).

Run from the repository root with the dev-only venv:
    ../venv/bin/python tools/reference/backbone/make_backbone_fixture.py
Writes fixtures/backbone/resnet18_features.safetensors and resnet18_keys.json; the Rust side is
`tests/backbone_init.rs`.
"""
import json
from pathlib import Path

import torch
import torchvision
from safetensors.torch import save_file
from torchvision.models._utils import IntermediateLayerGetter

OUT = Path("fixtures/backbone")


def formula(index: int, n: int) -> torch.Tensor:
    """((j * 7919 + index * 104729) mod 2001) / 1000 - 1 for j in 0..n, exactly in f32."""
    j = torch.arange(n, dtype=torch.int64)
    return (((j * 7919 + index * 104729) % 2001).to(torch.float32) / 1000.0) - 1.0


def value(key: str, index: int, shape) -> torch.Tensor:
    n = 1
    for s in shape:
        n *= s
    v = formula(index, n).reshape(shape)
    if key.endswith("running_var"):
        return 1.0 + 0.5 * v.abs()
    if key.endswith("running_mean") or key.endswith("bias"):
        return 0.1 * v
    if key.endswith("weight") and len(shape) == 1:  # batch-norm scale
        return 1.0 + 0.1 * v
    fan_in = n // shape[0]
    return v * (1.0 / fan_in) ** 0.5


def main():
    model = torchvision.models.resnet18(weights=None)
    sd = model.state_dict()
    keys = sorted(k for k, t in sd.items() if t.is_floating_point())
    with torch.no_grad():
        for index, key in enumerate(keys):
            sd[key].copy_(value(key, index, tuple(sd[key].shape)))
    model.eval()
    getter = IntermediateLayerGetter(model, {f"layer{i}": str(i - 1) for i in range(1, 5)})
    x = formula(7, 3 * 96 * 128).reshape(1, 3, 96, 128) * 0.5 + 0.5
    with torch.no_grad():
        features = getter(x)
    OUT.mkdir(parents=True, exist_ok=True)
    tensors = {"input": x.contiguous()}
    tensors.update({f"layer{int(k) + 1}": v.contiguous() for k, v in features.items()})
    save_file(tensors, OUT / "resnet18_features.safetensors")
    shapes = {k: list(sd[k].shape) for k in keys}
    # num_batches_tracked is an integer counter: kept in the key list so the loader sees it as
    # torchvision writes it.
    meta = {"torchvision": torchvision.__version__, "float_keys": shapes,
            "int_keys": sorted(k for k, t in sd.items() if not t.is_floating_point())}
    (OUT / "resnet18_keys.json").write_text(json.dumps(meta, indent=1))
    print({k: tuple(v.shape) for k, v in tensors.items()})


if __name__ == "__main__":
    main()
