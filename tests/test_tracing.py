"""Every step traces with torch.fx and scripts with TorchScript, FX-then-TorchScript included (issue #24), and the
models compute what they computed before: plain torch ops on the plan's layers, bit for bit in float32 on CPU (the
endpoints: torchvision's ResNet-50 and timm's ConvNeXt-T with the same weights)."""

import copy

import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

from roadmap.layers import Kind, Layout, plan
from roadmap.model import BatchNormLast, build_model
from roadmap.weights import from_timm_convnext, from_torchvision_resnet50
from steps import NAMES

TINY = dict(width_mult=0.125, depth_mult=0.34)
# where BatchNormLast, LayerNorm and the endpoints are, and the steps around them
KEY_STEPS = ["resnet50", "patchify_stem", "move_up_dwconv", "fewer_norms", "layer_norm", "convnext_tiny"]


def tiny(name, num_classes=5):
    return randomize(build_model(name, num_classes, **TINY))


def randomize(model):
    """Non-trivial norm statistics and scales, so that a misplaced or skipped layer shows in the output."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, t in [*model.named_parameters(), *model.named_buffers()]:
            if name.endswith("running_mean"):
                t.copy_(torch.rand(t.shape, generator=g) * 0.2 - 0.1)
            elif name.endswith(("running_var", "gamma")) or ("norm" in name and name.endswith("weight")):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
    return model


def x32(n=2):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(0))


# --------------------------------------------------------------------------------------------------
# torch.fx and TorchScript


@pytest.mark.parametrize("name", NAMES)
def test_every_step_traces_and_scripts(name):
    model = tiny(name).eval()
    x = x32()
    with torch.no_grad():
        y = model(x)
        traced = torch.fx.symbolic_trace(model)
        assert torch.equal(traced(x), y)
        scripted = torch.jit.script(model)
        torch.testing.assert_close(scripted(x), y, rtol=1e-5, atol=1e-6)
        fx_scripted = torch.jit.script(torch.fx.symbolic_trace(model))  # FX copies the annotations: real types
        torch.testing.assert_close(fx_scripted(x), y, rtol=1e-5, atol=1e-6)
        extractor = create_feature_extractor(model, {"stages.3": "s3", "head.fc": "logits"})
        out = extractor(x)
        assert torch.equal(out["s3"], model.forward_features(x)) and torch.equal(out["logits"], y)


@pytest.mark.parametrize("name", ["move_up_dwconv", "fewer_norms"])
def test_a_traced_model_trains_as_the_module_does(name):
    """In training mode too: same outputs, gradients and BatchNorm statistics, the batch count included."""
    eager = tiny(name).train()
    traced = torch.fx.symbolic_trace(copy.deepcopy(eager))
    x = x32()
    torch.manual_seed(1)  # the same stochastic-depth draws
    ya = eager(x)
    torch.manual_seed(1)
    yb = traced(x)
    assert torch.equal(ya, yb)
    ya.square().sum().backward()
    yb.square().sum().backward()
    params, buffers = dict(traced.named_parameters()), dict(traced.named_buffers())  # (in the order of first use)
    assert params.keys() == dict(eager.named_parameters()).keys()
    assert buffers.keys() == dict(eager.named_buffers()).keys()
    for n, p in eager.named_parameters():
        assert torch.equal(p.grad, params[n].grad), n
    for n, b in eager.named_buffers():
        assert torch.equal(b, buffers[n]), n
    counts = [m.num_batches_tracked.item() for m in eager.modules() if isinstance(m, BatchNormLast)]
    assert counts and set(counts) == {1}


def test_batchnorm_last_is_batchnorm1d_on_the_nhwc_view():
    """The channels-last BatchNorm computes what `BatchNorm1d.forward` (the code before issue #24) computes, in
    training (statistics and batch count too) and in evaluation."""
    ours = randomize(BatchNormLast(6))
    ref = nn.BatchNorm1d(6)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(2, 5, 4, 6)
    for mode in (True, False, True):
        ours.train(mode), ref.train(mode)
        assert torch.equal(ours(x), ref(x.reshape(-1, 6)).view(x.shape))
        for key, value in ref.state_dict().items():
            assert torch.equal(ours.state_dict()[key], value), key


# --------------------------------------------------------------------------------------------------
# Bit for bit: the plan's layers as plain torch ops


def reference_layer(spec, m, x):
    """One layer of the plan as a torch function, with the module's weights."""
    if spec.kind == Kind.CONV:
        return F.conv2d(x, m.weight, m.bias, m.stride, m.padding, 1, m.groups)
    if spec.kind == Kind.LINEAR:
        return F.linear(x, m.weight, m.bias)
    if spec.kind == Kind.NORM and isinstance(m, BatchNormLast):  # what the code before issue #24 ran
        return nn.BatchNorm1d.forward(m, x.reshape(-1, x.shape[-1])).view(x.shape)
    if spec.kind == Kind.NORM and isinstance(m, nn.BatchNorm2d):
        return F.batch_norm(x, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)
    if spec.kind == Kind.NORM:  # LayerNorm over the channels, channels-last or first
        last = x if spec.layout is Layout.LAST else x.permute(0, 2, 3, 1)
        out = F.layer_norm(last, (spec.c_out,), m.weight, m.bias, m.eps)
        return out if spec.layout is Layout.LAST else out.permute(0, 3, 1, 2)
    if spec.kind == Kind.ACT:
        return F.relu(x) if isinstance(m, nn.ReLU) else F.gelu(x)
    if spec.kind == Kind.MAX_POOL:
        return F.max_pool2d(x, spec.kernel, spec.stride, spec.padding)
    if spec.kind == Kind.GLOBAL_POOL:
        return F.adaptive_avg_pool2d(x, 1)
    if spec.kind == Kind.LAYER_SCALE:
        return x * m.gamma.view(1, -1, 1, 1)
    if spec.kind == Kind.PERMUTE:
        return x.permute(0, 2, 3, 1) if spec.layout is Layout.LAST else x.permute(0, 3, 1, 2)
    raise AssertionError(f"no reference for {spec.kind}")


def reference_forward(model, net, num_classes, x):
    """The model's forward pass (eval), walking the plan: stem, each block's branch + shortcut, head."""
    p = plan(net, num_classes)

    def run(specs, x):
        for spec in specs:
            if spec.kind != Kind.DROP_PATH:  # identity in evaluation
                x = reference_layer(spec, model.get_submodule(spec.name), x)
        return x

    x = run(p.stem, x)
    for stage in p.stages:
        x = run(stage.downsample, x)
        for block in stage.blocks:
            y = run([s for s in (block.layer_scale,) if s], run(block.branch, x)) + run(block.shortcut, x)
            x = run([block.act] if block.act else [], y)
    pooled = run([s for s in p.head if s.kind != Kind.LINEAR], x).flatten(1)
    return run([s for s in p.head if s.kind == Kind.LINEAR], pooled)


@pytest.mark.parametrize("name", NAMES)
def test_outputs_are_the_plan_in_plain_torch_ops_bit_for_bit(name):
    model = tiny(name).eval()
    x = x32()
    with torch.no_grad():
        assert torch.equal(model(x), reference_forward(model, model.network, 5, x))


def test_the_endpoints_are_torchvision_and_timm_bit_for_bit():
    x = torch.randn(2, 3, 64, 64)
    ref = randomize(torchvision.models.resnet50()).eval()
    ours = build_model("resnet50").eval()
    ours.load_state_dict(from_torchvision_resnet50(ref.state_dict()), strict=True)
    with torch.no_grad():
        assert torch.equal(ours(x), ref(x))
        assert torch.equal(torch.jit.script(ours)(x), ref(x))
    ref = randomize(timm.create_model("convnext_tiny")).eval()
    ours = build_model("convnext_tiny").eval()
    ours.load_state_dict(from_timm_convnext(ref.state_dict()), strict=True)
    with torch.no_grad():
        assert torch.equal(ours(x), ref(x))
        assert torch.equal(torch.fx.symbolic_trace(ours)(x), ref(x))
