"""Shared fixtures: tiny models with hand-set weights, a random resnet18, hygiene checks."""

from __future__ import annotations

import copy
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import torch
from torch import nn
from torch.nn.modules import module as module_globals

_GLOBAL_HOOK_DICTS = (
    "_global_forward_hooks",
    "_global_forward_pre_hooks",
    "_global_backward_hooks",
    "_global_backward_pre_hooks",
    "_global_forward_hooks_with_kwargs",
    "_global_forward_hooks_always_called",
)
_MODULE_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
)

# The hand-set model of the exact-value tests (values derived in tests/test_cam.py).
TINY_IMAGE = [[1.0, 2.0, 0.0], [0.0, 1.0, -1.0], [2.0, -3.0, 1.0]]
TINY_CONV = [[[[1.0, 0.0], [0.0, 1.0]]], [[[0.0, 1.0], [1.0, 0.0]]]]
TINY_FC = [[1.0, 2.0, 3.0, -1.0, -2.0, 1.0, 0.5, 2.0], [0.0, -1.0, 1.0, 1.0, 1.0, 1.0, -1.0, 0.0]]


class TinyCNN(nn.Module):
    """1x3x3 image -> conv 2x2 (2 channels, 2x2 map) -> ReLU -> flatten -> linear(8, 2)."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 2, bias=False)
        self.relu = nn.ReLU(inplace=inplace)
        self.fc = nn.Linear(8, 2, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor(TINY_CONV))
            self.fc.weight.copy_(torch.tensor(TINY_FC))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.relu(self.conv(x)).flatten(1))


@pytest.fixture
def tiny_cnn() -> TinyCNN:
    return TinyCNN().eval()


@pytest.fixture
def tiny_cnn_inplace() -> TinyCNN:
    """The same model with ``ReLU(inplace=True)`` right after the conv."""
    return TinyCNN(inplace=True).eval()


@pytest.fixture
def tiny_image() -> torch.Tensor:
    return torch.tensor([[TINY_IMAGE]])


@pytest.fixture(scope="session")
def resnet18() -> nn.Module:
    """torchvision resnet18 with seeded random weights, in eval mode (shared: tests must not
    change it, and the hygiene tests check that vlx does not)."""
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).eval()


@pytest.fixture(scope="session")
def images64() -> torch.Tensor:
    return torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))


class Watch:
    """Records a model and some tensors; ``check()`` asserts that nothing was left behind.

    Nothing left behind means: no hooks on any module or in torch's global hook dicts, no
    parameter ``.grad``, the same parameter and buffer values, the same module types, no
    instance attributes added or removed, the watched tensors unchanged (values and
    ``requires_grad``), no torch function mode still pushed and the oneDNN / cuDNN switches
    as they were.
    """

    def __init__(self, model: nn.Module, *tensors: torch.Tensor) -> None:
        self.model = model
        self.state = copy.deepcopy(model.state_dict())
        self.types = {name: type(m) for name, m in model.named_modules()}
        self.attrs = {name: set(vars(m)) for name, m in model.named_modules()}
        self.tensors = [(t, t.detach().clone(), t.requires_grad) for t in tensors]
        self.globals = {name: dict(getattr(module_globals, name)) for name in _GLOBAL_HOOK_DICTS}
        self.modes = torch._C._len_torch_function_stack()
        self.backends = _backend_flags()

    def check(self) -> None:
        for name, module in self.model.named_modules():
            for hooks in _MODULE_HOOK_DICTS:
                assert not getattr(module, hooks), f"{hooks} left on {name or 'model'}"
        for name in _GLOBAL_HOOK_DICTS:
            assert dict(getattr(module_globals, name)) == self.globals[name], name
        for name, param in self.model.named_parameters():
            assert param.grad is None, f"{name}.grad was set"
        state = self.model.state_dict()
        assert state.keys() == self.state.keys()
        for key, value in self.state.items():
            assert torch.equal(state[key], value), f"{key} changed"
        assert {name: type(m) for name, m in self.model.named_modules()} == self.types
        assert {name: set(vars(m)) for name, m in self.model.named_modules()} == self.attrs
        for tensor, values, requires_grad in self.tensors:
            assert torch.equal(tensor, values), "an input tensor was modified"
            assert tensor.requires_grad == requires_grad
            assert tensor.grad is None
        assert torch._C._len_torch_function_stack() == self.modes, "a function mode is left"
        assert _backend_flags() == self.backends, "oneDNN / cuDNN flags were not restored"


def _backend_flags() -> tuple[bool, bool]:
    return torch.backends.mkldnn.enabled, torch.backends.cudnn.enabled


@pytest.fixture
def watch() -> type[Watch]:
    return Watch


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture
def load_example(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], ModuleType]:
    """Import ``examples/NAME.py`` with examples/ on the path, as running it would (and in
    ``sys.modules``, which its dataclasses need), undone after the test."""

    def load(name: str) -> ModuleType:
        monkeypatch.syspath_prepend(str(EXAMPLES))
        spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, name, module)
        spec.loader.exec_module(module)
        return module

    return load
