"""Grad-CAM (vlx.cam) with its helpers: targets, layer resolution, TokenGrid, batched backward."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from vlx.backward import per_target_gradients
from vlx.cam import GradCAM, grad_cam_maps
from vlx.errors import InputError
from vlx.layers import TokenGrid, named_layer

T = torch.tensor


def explain(model, *inputs, layer="conv", targets=None, counterfactual=False, **options):
    with GradCAM(model, layer, **options) as cam:
        return cam(*inputs, targets=targets, counterfactual=counterfactual)


# --- 1. The CAM theorem (paper Sec. 3.1) ---------------------------------------------------


class CamNet(nn.Module):
    """conv -> ReLU -> global average pool -> linear: the architecture CAM needs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.relu(self.conv(x))).flatten(1))


def test_cam_theorem_alphas_are_class_weights_over_z() -> None:
    # y_c = b_c + sum_k w_ck (1/Z) sum_ij A_kij, so dy_c/dA_kij = w_ck / Z everywhere:
    # alpha_ck = w_ck / Z and the Grad-CAM map is ReLU(sum_k (w_ck / Z) A_k) = ReLU(CAM_c) / Z.
    torch.manual_seed(0)
    model = CamNet().eval()
    x = torch.randn(2, 3, 4, 6)
    z = 4 * 6
    classes = [0, 2, 4]
    e = explain(model, x, layer="relu", targets=[classes, classes])
    weights = model.fc.weight.detach()[classes]  # (T, K)
    torch.testing.assert_close(e.alphas, (weights / z).expand(2, 3, 4), rtol=0, atol=1e-6)
    with torch.no_grad():
        a = model.relu(model.conv(x))  # (N, K, h, w)
        cam = torch.einsum("tk,nkhw->nthw", weights, a)  # CAM (Zhou et al.) without the 1/Z
    torch.testing.assert_close(e.maps, cam.clamp_min(0) / z, rtol=1e-6, atol=1e-6)
    assert e.maps.shape == (2, 3, 4, 6) and (e.maps > 0).any() and (cam < 0).any()
    torch.testing.assert_close(e.scores, model(x).detach()[:, classes], rtol=0, atol=0)
    assert e.targets == [classes, classes] and e.layer == "relu" and e.method == "gradcam"


# --- 2. Exact values on the hand-set TinyCNN (tests/conftest.py) --------------------------
#
# x = [[1, 2, 0], [0, 1, -1], [2, -3, 1]]; conv kernels k0 = [[1, 0], [0, 1]], k1 = [[0, 1], [1, 0]]
#   A0[i, j] = x[i, j] + x[i+1, j+1]  -> [[1+1, 2-1], [0-3, 1+1]]   = [[2, 1], [-3, 2]]
#   A1[i, j] = x[i, j+1] + x[i+1, j]  -> [[2+0, 0+1], [1+2, -1-3]]  = [[2, 1], [3, -4]]
# y = W relu(A).flatten() with W (per class, per channel):
#   class 0: ch0 [[1, 2], [3, -1]], ch1 [[-2, 1], [0.5, 2]]
#   class 1: ch0 [[0, -1], [1, 1]], ch1 [[1, 1], [-1, 0]]
# relu(A) = ch0 [[2, 1], [0, 2]], ch1 [[2, 1], [3, 0]]
#   y0 = 2 + 2 + 0 - 2 - 4 + 1 + 1.5 + 0 = 0.5;   y1 = 0 - 1 + 0 + 2 + 2 + 1 - 3 + 0 = 1
# dy/dA = W * (A > 0), masks m0 = [[1, 1], [0, 1]], m1 = [[1, 1], [1, 0]]:
#   class 0: ch0 [[1, 2], [0, -1]], ch1 [[-2, 1], [0.5, 0]]
#   class 1: ch0 [[0, -1], [0, 1]], ch1 [[1, 1], [-1, 0]]

EXACT = {
    # mean: a0 = (1+2+0-1)/4 = 0.5, (-2+1+0.5+0)/4 = -0.125 -> 0.5 A0 - 0.125 A1
    #   = [[1-0.25, 0.5-0.125], [-1.5-0.375, 1+0.5]] = [[0.75, 0.375], [-1.875, 1.5]]
    # class 1: (0-1+0+1)/4 = 0, (1+1-1+0)/4 = 0.25 -> 0.25 A1 = [[0.5, 0.25], [0.75, -1]]
    "gradcam": (
        {},
        [[0.5, -0.125], [0.0, 0.25]],
        [[[0.75, 0.375], [0.0, 1.5]], [[0.5, 0.25], [0.75, 0.0]]],
    ),
    "no-relu": (
        {"relu": False},
        [[0.5, -0.125], [0.0, 0.25]],
        [[[0.75, 0.375], [-1.875, 1.5]], [[0.5, 0.25], [0.75, -1.0]]],
    ),
    # max: class 0 (2, 1) -> 2 A0 + A1 = [[6, 3], [-3, 0]]; class 1 (1, 1) -> [[4, 2], [0, -2]]
    "max": (
        {"pooling": "max"},
        [[2.0, 1.0], [1.0, 1.0]],
        [[[6.0, 3.0], [0.0, 0.0]], [[4.0, 2.0], [0.0, 0.0]]],
    ),
    # |grad| mean: class 0 (4/4, 3.5/4) = (1, 0.875) -> [[3.75, 1.875], [-0.375, -1.5]]
    #              class 1 (2/4, 3/4) = (0.5, 0.75)   -> [[2.5, 1.25], [0.75, -2]]
    "absolute": (
        {"absolute": True},
        [[1.0, 0.875], [0.5, 0.75]],
        [[[3.75, 1.875], [0.0, 0.0]], [[2.5, 1.25], [0.75, 0.0]]],
    ),
    # guided ReLU backward: relu(W) * m
    #   class 0: ch0 [[1, 2], [0, 0]], ch1 [[0, 1], [0.5, 0]] -> (0.75, 0.375)
    #            0.75 A0 + 0.375 A1 = [[2.25, 1.125], [-1.125, 0]]
    #   class 1: ch0 [[0, 0], [0, 1]], ch1 [[1, 1], [0, 0]] -> (0.25, 0.5)
    #            0.25 A0 + 0.5 A1 = [[1.5, 0.75], [0.75, -1.5]]
    "guided": (
        {"backward_rule": "guided"},
        [[0.75, 0.375], [0.25, 0.5]],
        [[[2.25, 1.125], [0.0, 0.0]], [[1.5, 0.75], [0.75, 0.0]]],
    ),
    # deconv ReLU backward: relu(W), whatever A
    #   class 0: ch0 [[1, 2], [3, 0]], ch1 [[0, 1], [0.5, 2]] -> (1.5, 0.875)
    #            1.5 A0 + 0.875 A1 = [[4.75, 2.375], [-1.875, -0.5]]
    #   class 1: ch0 [[0, 0], [1, 1]], ch1 [[1, 1], [0, 0]] -> (0.5, 0.5) -> [[2, 1], [0, -1]]
    "deconv": (
        {"backward_rule": "deconv"},
        [[1.5, 0.875], [0.5, 0.5]],
        [[[4.75, 2.375], [0.0, 0.0]], [[2.0, 1.0], [0.0, 0.0]]],
    ),
}


@pytest.mark.parametrize("case", list(EXACT))
def test_exact_values_on_hand_set_model(case, tiny_cnn, tiny_image) -> None:
    options, alphas, maps = EXACT[case]
    e = explain(tiny_cnn, tiny_image, targets=[[0, 1]], **options)
    torch.testing.assert_close(e.alphas, T([alphas]), rtol=0, atol=1e-6)
    torch.testing.assert_close(e.maps, T([maps]), rtol=0, atol=1e-6)
    torch.testing.assert_close(e.scores, T([[0.5, 1.0]]), rtol=0, atol=1e-6)
    assert e.targets == [[0, 1]] and e.layer == "conv"


def test_counterfactual_negates_gradients(tiny_cnn, tiny_image) -> None:
    # -alphas: class 0 (-0.5, 0.125) -> ReLU(-[[0.75, 0.375], [-1.875, 1.5]]) = [[0, 0], [1.875, 0]]
    #          class 1 (0, -0.25)   -> ReLU(-[[0.5, 0.25], [0.75, -1]])       = [[0, 0], [0, 1]]
    e = explain(tiny_cnn, tiny_image, targets=[[0, 1]], counterfactual=True)
    torch.testing.assert_close(e.alphas, T([[[-0.5, 0.125], [0.0, -0.25]]]), rtol=0, atol=1e-6)
    expected = T([[[[0.0, 0.0], [1.875, 0.0]], [[0.0, 0.0], [0.0, 1.0]]]])
    torch.testing.assert_close(e.maps, expected, rtol=0, atol=1e-6)
    assert e.method == "counterfactual"


def test_grad_cam_maps_matches_formula_and_rejects_bad_pooling() -> None:
    a = T([[[[1.0, -2.0], [3.0, 0.0]], [[0.0, 1.0], [1.0, 1.0]]]])  # (1, 2, 2, 2)
    g = T([[[[[1.0, 3.0], [0.0, 0.0]], [[-4.0, 0.0], [0.0, 0.0]]]]])  # (1, 1, 2, 2, 2)
    # alphas (1, -1): A0 - A1 = [[1, -3], [2, -1]]
    maps, alphas = grad_cam_maps(a, g)
    assert alphas.tolist() == [[[1.0, -1.0]]]
    assert maps.tolist() == [[[[1.0, 0.0], [2.0, 0.0]]]]
    with pytest.raises(ValueError, match="'median'.*mean, max"):
        grad_cam_maps(a, g, pooling="median")
    with pytest.raises(ValueError, match="'median'"):
        GradCAM(nn.Conv2d(1, 1, 1), pooling="median")
    with pytest.raises(ValueError, match="'gradient'.*guided, deconv"):
        GradCAM(nn.Conv2d(1, 1, 1), backward_rule="gradient")


# --- 4. Batching: targets and images -------------------------------------------------------


@pytest.mark.parametrize("layer", ["layer4", "layer2"])
def test_batched_targets_equal_separate_calls(layer, resnet18, images64, watch) -> None:
    x = images64[:1]
    classes = [0, 333, 999]
    w = watch(resnet18, x)
    batched = explain(resnet18, x, layer=layer, targets=[classes])
    w.check()
    assert batched.maps.shape[:2] == (1, 3)
    for t, c in enumerate(classes):
        single = explain(resnet18, x, layer=layer, targets=c)
        torch.testing.assert_close(batched.maps[:, t], single.maps[:, 0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(batched.alphas[:, t], single.alphas[:, 0], rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(batched.scores[:, t], single.scores[:, 0], rtol=0, atol=0)
        assert single.alphas.abs().sum() > 0


def test_images_with_different_targets_each_equal_alone(resnet18, images64) -> None:
    rows = [[1, 2, 3], [10, 20, 30], [999, 0, 500]]
    together = explain(resnet18, images64, layer="layer4", targets=rows)
    assert together.targets == rows and together.maps.shape[:2] == (3, 3)
    for i, row in enumerate(rows):
        alone = explain(resnet18, images64[i : i + 1], layer="layer4", targets=[row])
        # no image silently left out or zeroed: every image-target has a non-zero alpha vector
        assert (alone.alphas.abs().sum(-1) > 0).all()
        torch.testing.assert_close(together.maps[i], alone.maps[0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(together.alphas[i], alone.alphas[0], rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(together.scores[i], alone.scores[0], rtol=1e-5, atol=1e-5)


def test_callable_target_returning_n_by_t_scores(resnet18, images64) -> None:
    x = images64[:2]
    by_index = explain(resnet18, x, layer="layer4", targets=[[3, 7], [3, 7]])
    by_callable = explain(resnet18, x, layer="layer4", targets=lambda out: out[:, [3, 7]])
    assert by_callable.targets is None
    torch.testing.assert_close(by_callable.maps, by_index.maps, rtol=0, atol=0)
    torch.testing.assert_close(by_callable.alphas, by_index.alphas, rtol=0, atol=0)
    # gradients are linear in the score: alpha(y3 - 2 y7) = alpha(y3) - 2 alpha(y7)
    diff = explain(resnet18, x, layer="layer4", targets=lambda out: out[:, 3:4] - 2 * out[:, 7:8])
    expected = by_index.alphas[:, :1] - 2 * by_index.alphas[:, 1:]
    torch.testing.assert_close(diff.alphas, expected, rtol=1e-5, atol=1e-7)


def test_callable_target_must_return_n_by_t(tiny_cnn, tiny_image) -> None:
    with pytest.raises(ValueError, match=r"\(N, T\).*\(2,\)"):
        explain(tiny_cnn, tiny_image, targets=lambda out: out[0])


def test_none_explains_argmax_and_int_explains_that_class(resnet18, images64) -> None:
    x = images64[:2]
    top = resnet18(x).argmax(1).tolist()
    auto = explain(resnet18, x, layer="layer4")
    given = explain(resnet18, x, layer="layer4", targets=[[c] for c in top])
    assert auto.targets == [[c] for c in top]
    torch.testing.assert_close(auto.maps, given.maps, rtol=0, atol=0)
    one = explain(resnet18, x, layer="layer4", targets=5)
    rows = explain(resnet18, x, layer="layer4", targets=[[5]] * 2)
    assert one.targets == [[5], [5]]
    torch.testing.assert_close(one.maps, rows.maps, rtol=0, atol=0)


def test_flat_list_is_one_target_per_image(tiny_cnn, tiny_image) -> None:
    x = torch.cat([tiny_image, -tiny_image])
    e = explain(tiny_cnn, x, targets=[1, 0])
    assert e.targets == [[1], [0]]
    torch.testing.assert_close(e.maps[0, 0], T(EXACT["gradcam"][2][1]), rtol=0, atol=1e-6)


@pytest.mark.parametrize("bad", [2, -1, [[0, 7]]])
def test_out_of_range_class_names_index_and_range(bad, tiny_cnn, tiny_image) -> None:
    index = bad if isinstance(bad, int) else 7
    with pytest.raises(InputError, match=rf"class index {index} .*0\.\.1"):
        explain(tiny_cnn, tiny_image, targets=bad)


@pytest.mark.parametrize("bad", [[[0, 1], [0]], [0], [[0], [1], [0]]])
def test_ragged_or_miscounted_targets_raise_value_error(bad, tiny_cnn, tiny_image) -> None:
    x = torch.cat([tiny_image, tiny_image])
    with pytest.raises(ValueError, match="targets"):
        explain(tiny_cnn, x, targets=bad)


def test_mixed_int_and_list_targets_raise_value_error(tiny_cnn, tiny_image) -> None:
    x = torch.cat([tiny_image, tiny_image])
    with pytest.raises(ValueError):
        explain(tiny_cnn, x, targets=[0, [0, 1]])


def test_zero_dim_tensor_target_acts_like_int(tiny_cnn, tiny_image) -> None:
    x = torch.cat([tiny_image, tiny_image])
    e = explain(tiny_cnn, x, targets=torch.tensor(1))
    assert e.targets == [[1], [1]]


# --- 5. Hygiene ----------------------------------------------------------------------------


def test_call_leaves_model_and_input_untouched(tiny_cnn, tiny_image, watch) -> None:
    w = watch(tiny_cnn, tiny_image)
    with GradCAM(tiny_cnn, "conv", backward_rule="guided") as cam:
        cam(tiny_image, targets=[[0, 1]])
        cam(tiny_image, targets=0)
    w.check()
    # no copies of activations or gradients kept between calls
    assert not [k for k, v in vars(cam).items() if isinstance(v, torch.Tensor)]


class ExplodingAfterConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 2)
        self.fc = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.conv(x)
        raise RuntimeError("boom after the layer")


def _raise(outputs):
    raise KeyError("target failed")


@pytest.mark.parametrize("rule", [None, "guided"])
def test_exception_in_target_propagates_and_cleans_up(rule, tiny_cnn, tiny_image, watch) -> None:
    w = watch(tiny_cnn, tiny_image)
    with (
        pytest.raises(KeyError, match="target failed"),
        GradCAM(tiny_cnn, "conv", backward_rule=rule) as cam,
    ):
        cam(tiny_image, targets=_raise)  # raised inside the GradCAM block, propagates out
    w.check()


@pytest.mark.parametrize("layer", ["conv", None])
def test_exception_in_forward_propagates_and_cleans_up(layer, tiny_image, watch) -> None:
    model = ExplodingAfterConv().eval()
    w = watch(model, tiny_image)
    with (
        pytest.raises(RuntimeError, match="boom after the layer"),
        GradCAM(model, layer, backward_rule="deconv") as cam,
    ):
        cam(tiny_image, targets=0)
    w.check()


class ConvLSTM(nn.Module):
    """conv -> pixels as a sequence -> LSTM -> linear; ``bad`` feeds the LSTM a wrong width."""

    def __init__(self, bad: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.lstm = nn.LSTM(3, 4, batch_first=True)
        self.fc = nn.Linear(4, 3)
        self.bad = bad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = torch.relu(self.conv(x)).flatten(2).transpose(1, 2)  # (N, h*w, 3)
        out, _ = self.lstm(seq[..., :2] if self.bad else seq)
        return self.fc(out[:, -1])


def test_recurrent_model_batched_and_clean(watch) -> None:
    model = ConvLSTM().eval()
    x = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    w = watch(model, x)
    batched = explain(model, x, targets=[[0, 1, 2], [2, 0, 1]])
    w.check()
    for t in range(3):
        single = explain(model, x, targets=[[0, 1, 2][t], [2, 0, 1][t]])
        assert (single.alphas.abs().sum(-1) > 0).all()
        torch.testing.assert_close(batched.alphas[:, t], single.alphas[:, 0], rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(batched.maps[:, t], single.maps[:, 0], rtol=1e-5, atol=1e-7)


def test_recurrent_model_exception_restores_everything(watch) -> None:
    model = ConvLSTM(bad=True).eval()
    x = torch.randn(1, 1, 4, 4)
    w = watch(model, x)
    with pytest.raises(RuntimeError, match="input_size|size"):
        explain(model, x, targets=0)
    w.check()


# --- 6. Layer resolution -------------------------------------------------------------------


def test_layer_by_module_equals_layer_by_name(resnet18, images64) -> None:
    by_name = explain(resnet18, images64[:1], layer="layer3.1.conv2", targets=[[4, 9]])
    by_module = explain(resnet18, images64[:1], layer=resnet18.layer3[1].conv2, targets=[[4, 9]])
    assert by_module.layer == by_name.layer == "layer3.1.conv2"
    assert by_name.maps.shape == (1, 2, 4, 4)
    torch.testing.assert_close(by_module.maps, by_name.maps, rtol=0, atol=0)
    torch.testing.assert_close(by_module.alphas, by_name.alphas, rtol=0, atol=0)


def test_unknown_layer_names_the_bad_name_and_close_ones(resnet18) -> None:
    with pytest.raises(InputError, match=r"'layer5'.*layer4"):
        GradCAM(resnet18, "layer5")
    with pytest.raises(InputError, match=r"'lyaer4\.1\.conv2'.*layer4\.1\.conv2"):
        named_layer(resnet18, "lyaer4.1.conv2")
    with pytest.raises(InputError, match="Conv2d is not a submodule"):
        GradCAM(resnet18, nn.Conv2d(1, 1, 1))
    with pytest.raises(TypeError, match="int"):
        GradCAM(resnet18, 4)


def test_default_layer_is_found_by_probing_forward(resnet18, images64, watch) -> None:
    w = watch(resnet18, images64)
    with GradCAM(resnet18) as cam:
        auto = cam(images64[:2], targets=[[1], [2]])
    w.check()
    assert cam.layer_name == "layer4" and auto.layer == "layer4"
    assert auto.maps.shape == (2, 1, 2, 2)
    named = explain(resnet18, images64[:2], layer="layer4", targets=[[1], [2]])
    torch.testing.assert_close(auto.maps, named.maps, rtol=0, atol=0)


class Twice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1)
        self.fc = nn.Linear(9, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(self.conv(x)).flatten(1))


def test_layer_running_twice_is_a_clear_error(tiny_image, watch) -> None:
    model = Twice().eval()
    w = watch(model, tiny_image)
    with pytest.raises(InputError, match=r"'conv' ran 2 times.*exactly once"):
        explain(model, tiny_image, targets=0)
    w.check()


def test_inplace_relu_after_layer_uses_pre_relu_activation(
    tiny_cnn_inplace, tiny_cnn, tiny_image
) -> None:
    # Same weights as the EXACT table: the raw map's -1.875 at (1, 0) is 0.5 * A0 - 0.125 * A1
    # with the PRE-ReLU A0 = -3 there; the alphas need the ReLU mask in the gradient.
    for key in ("no-relu", "gradcam", "guided"):
        options, alphas, maps = EXACT[key]
        e = explain(tiny_cnn_inplace, tiny_image, targets=[[0, 1]], **options)
        torch.testing.assert_close(e.alphas, T([alphas]), rtol=0, atol=1e-6)
        torch.testing.assert_close(e.maps, T([maps]), rtol=0, atol=1e-6)
    # the model's own output is unaffected by the hook's copy
    torch.testing.assert_close(tiny_cnn_inplace(tiny_image), tiny_cnn(tiny_image))


def test_training_mode_warns(tiny_cnn, tiny_image) -> None:
    tiny_cnn.train()
    with pytest.warns(UserWarning, match="training mode"):
        explain(tiny_cnn, tiny_image, targets=0)
    tiny_cnn.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        explain(tiny_cnn, tiny_image, targets=0)


def test_layer_without_spatial_output_is_rejected(tiny_cnn, tiny_image) -> None:
    with pytest.raises(ValueError, match=r"'fc' gives shape \(1, 2\).*spatial layers: conv, relu .*to_grid"):
        explain(tiny_cnn, tiny_image, layer="fc", targets=0)


# --- 7. TokenGrid --------------------------------------------------------------------------


@pytest.mark.parametrize(("h", "w", "grid", "prefix"), [(3, 3, None, 1), (2, 3, (2, 3), 1),
                                                        (3, 2, (3, 2), 2)])
def test_token_grid_maps_token_to_cell(h, w, grid, prefix) -> None:
    n, c = 2, 4
    tokens = torch.arange(n * (prefix + h * w) * c, dtype=torch.float32).reshape(n, -1, c)
    out = TokenGrid(prefix=prefix, grid=grid)(tokens)
    assert out.shape == (n, c, h, w)
    for i in range(h):
        for j in range(w):
            assert torch.equal(out[:, :, i, j], tokens[:, prefix + i * w + j, :])


def test_token_grid_errors_and_passthrough() -> None:
    with pytest.raises(ValueError, match="6 patch tokens.*grid=\\(h, w\\)"):
        TokenGrid()(torch.zeros(1, 7, 4))
    with pytest.raises(ValueError, match=r"\(N, L, C\).*\(7, 4\)"):
        TokenGrid()(torch.zeros(7, 4))
    grid = torch.randn(1, 4, 2, 2)
    assert TokenGrid()(grid) is grid


class TokenNet(nn.Module):
    """Patch tokens with a CLS token, a token-wise linear block (explained), ReLU, linear head."""

    def __init__(self, hw: tuple[int, int]) -> None:
        super().__init__()
        self.cls = nn.Parameter(torch.randn(1, 1, 3))
        self.block = nn.Linear(3, 4)
        self.head = nn.Linear(hw[0] * hw[1] * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.flatten(2).transpose(1, 2)  # (N, h*w, C), token i*w + j is pixel (i, j)
        tokens = torch.cat([self.cls.expand(x.shape[0], 1, 3), tokens], dim=1)
        patches = torch.relu(self.block(tokens))[:, 1:]
        return self.head(patches.flatten(1))


class ConvNet(nn.Module):
    """The same computation in (N, C, h, w) layout: the token-wise linear is a 1x1 conv."""

    def __init__(self, tokens: TokenNet) -> None:
        super().__init__()
        self.block = nn.Conv2d(3, 4, 1)
        self.head = tokens.head
        with torch.no_grad():
            self.block.weight.copy_(tokens.block.weight[:, :, None, None])
            self.block.bias.copy_(tokens.block.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.block(x))
        return self.head(a.flatten(2).transpose(1, 2).flatten(1))


@pytest.mark.parametrize(("hw", "grid"), [((3, 3), None), ((2, 3), (2, 3))])
def test_grad_cam_on_tokens_equals_conv_layout(hw, grid) -> None:
    torch.manual_seed(0)
    tokens_model = TokenNet(hw).eval()
    conv_model = ConvNet(tokens_model).eval()
    x = torch.randn(2, 3, *hw)
    torch.testing.assert_close(tokens_model(x), conv_model(x))
    on_tokens = explain(tokens_model, x, layer="block", targets=[[0, 2], [1, 2]],
                        to_grid=TokenGrid(grid=grid))
    on_conv = explain(conv_model, x, layer="block", targets=[[0, 2], [1, 2]])
    assert on_tokens.maps.shape == (2, 2, *hw)
    assert (on_conv.maps > 0).any()
    torch.testing.assert_close(on_tokens.maps, on_conv.maps, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(on_tokens.alphas, on_conv.alphas, rtol=1e-5, atol=1e-6)


# --- 10. per_target_gradients: batched backward and its loop fallback ----------------------


def _graph() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    wrt = torch.randn(2, 3, 4, 4, requires_grad=True)
    weight = torch.randn(5, 3 * 16)
    return torch.tanh(wrt.flatten(1)) @ weight.T, wrt  # scores (2, 5), non-linear in wrt


def _counting_grad(monkeypatch, batched_behaviour):
    real = torch.autograd.grad
    calls = {"batched": 0, "single": 0}

    def grad(*args, **kwargs):
        if kwargs.get("is_grads_batched"):
            calls["batched"] += 1
            return batched_behaviour(real, *args, **kwargs)
        calls["single"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", grad)
    return calls


def test_batched_gradients_equal_a_loop() -> None:
    scores, wrt = _graph()
    got = per_target_gradients(scores, wrt)
    assert got.shape == (2, 5, 3, 4, 4)
    for t in range(5):
        (expected,) = torch.autograd.grad(scores[:, t].sum(), wrt, retain_graph=True)
        torch.testing.assert_close(got[:, t], expected, rtol=1e-6, atol=1e-7)


def test_missing_batching_rule_falls_back_to_loop(monkeypatch) -> None:
    scores, wrt = _graph()
    expected = per_target_gradients(scores, wrt)

    def raise_batching(real, *args, **kwargs):
        raise RuntimeError("Batching rule not implemented for aten::foo")

    calls = _counting_grad(monkeypatch, raise_batching)
    scores, wrt = _graph()
    got = per_target_gradients(scores, wrt)
    assert calls == {"batched": 1, "single": 5}
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)


def test_vmap_performance_warning_falls_back_to_loop(monkeypatch) -> None:
    scores, wrt = _graph()
    expected = per_target_gradients(scores, wrt)

    def warn_then_run(real, *args, **kwargs):
        warnings.warn(
            "There is a performance drop because we have not yet implemented the batching "
            "rule for aten::foo.",
            UserWarning,
            stacklevel=2,
        )
        return real(*args, **kwargs)

    calls = _counting_grad(monkeypatch, warn_then_run)
    scores, wrt = _graph()
    got = per_target_gradients(scores, wrt)
    assert calls == {"batched": 1, "single": 5}
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)


def test_other_runtime_errors_propagate(monkeypatch) -> None:
    def out_of_memory(real, *args, **kwargs):
        raise RuntimeError("CUDA out of memory")

    calls = _counting_grad(monkeypatch, out_of_memory)
    scores, wrt = _graph()
    with pytest.raises(RuntimeError, match="out of memory"):
        per_target_gradients(scores, wrt)
    assert calls == {"batched": 1, "single": 0}


def test_gradcam_through_fallback_equals_batched(monkeypatch, tiny_cnn, tiny_image) -> None:
    expected = explain(tiny_cnn, tiny_image, targets=[[0, 1]])

    def raise_batching(real, *args, **kwargs):
        raise RuntimeError("Batching rule not implemented for aten::foo")

    calls = _counting_grad(monkeypatch, raise_batching)
    got = explain(tiny_cnn, tiny_image, targets=[[0, 1]])
    assert calls == {"batched": 1, "single": 2}
    torch.testing.assert_close(got.maps, expected.maps, rtol=0, atol=0)
    torch.testing.assert_close(got.alphas, expected.alphas, rtol=0, atol=0)


def test_one_target_needs_no_batched_call(monkeypatch) -> None:
    calls = _counting_grad(monkeypatch, lambda real, *a, **k: pytest.fail("batched call"))
    scores, wrt = _graph()
    got = per_target_gradients(scores[:, 2:3], wrt)
    assert calls == {"batched": 0, "single": 1} and got.shape == (2, 1, 3, 4, 4)


def test_scores_without_gradient_path_are_rejected() -> None:
    wrt = torch.randn(2, 3, requires_grad=True)
    other = torch.randn(2, 3, requires_grad=True)
    with pytest.raises(ValueError, match="no gradient path"):
        per_target_gradients(other * 2, wrt)  # (N, T=3), batched path
    with pytest.raises(ValueError, match="no gradient path"):
        per_target_gradients(other[:, :1] * 2, wrt)  # T=1 path
    with pytest.raises(ValueError, match="no gradient path"):
        per_target_gradients(torch.zeros(2, 3), wrt)
    with pytest.raises(ValueError, match=r"\(N, T\).*\(6,\)"):
        per_target_gradients((wrt * 2).flatten(), wrt)



def test_graph_meter_counts_each_saved_storage_once_and_no_parameters() -> None:
    from vlx.backward import GraphMeter

    weight = nn.Parameter(torch.ones(3))
    x = torch.randn(2, 3, requires_grad=True)
    with GraphMeter(exclude=[weight], counting=True) as meter:
        y = x * weight  # saves x (24 bytes) and the weight (left out)
        z = (y * y).sum()  # saves y twice: one storage of 24 bytes
    assert meter.bytes == 24 + 24 and z.requires_grad


def test_targets_in_chunks_equal_one_batched_backward(monkeypatch) -> None:
    """A long caption's targets are taken in chunks that fit the memory limit; the maps are
    those of one batched backward."""
    from PIL import Image

    from vlx import backward, cam
    from vlx.task import Example
    from vlx.tasks.captioning import ShowAndTellCaptioner

    captioner = ShowAndTellCaptioner.load()
    caption = " ".join(["a large red circle left of a small blue star"] * 4)
    batch = captioner.prepare([Example(Image.new("RGB", (128, 128), (90, 90, 90)), caption)])
    targets = captioner.targets(batch)
    whole = captioner.explain(batch, targets)
    calls = []
    real = backward._batched_gradients

    def counted(scores, wrt, columns, retain):
        calls.append(len(columns))
        return real(scores, wrt, columns, retain)

    monkeypatch.setattr(backward, "_batched_gradients", counted)
    monkeypatch.setattr(cam, "targets_per_backward", lambda graph_bytes: 7)
    chunked = captioner.explain(batch, targets)
    assert calls == [7, 7, 7, 7, 7, 5]  # 40 words
    torch.testing.assert_close(chunked.maps, whole.maps, rtol=0, atol=1e-6)
    torch.testing.assert_close(chunked.alphas, whole.alphas, rtol=1e-5, atol=1e-6)
    assert backward.targets_per_backward(2**20, limit=8 * 2**20) == 8
    assert backward.targets_per_backward(0) is None


class TwoConvs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 6, 3, padding=1)
        self.head = nn.Linear(6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv2(self.conv1(x).relu()).relu().mean((2, 3)))


def test_no_graph_is_recorded_before_the_explained_layer_and_flags_come_back():
    """The forward before the explained layer records nothing for a backward (its saved
    tensors would peak at the layer), the maps are unchanged, and every parameter's own
    requires_grad flag is back afterwards, also after calls from several threads at once: a
    frozen one stays frozen."""
    from concurrent.futures import ThreadPoolExecutor

    torch.manual_seed(0)
    model = TwoConvs().eval()
    frozen = model.conv2.bias
    frozen.requires_grad_(False)
    seen = []
    model.conv1.register_forward_hook(lambda m, i, o: seen.append(o.requires_grad))
    x = torch.randn(3, 3, 16, 16)
    with GradCAM(model, "conv2") as cam:
        maps = cam(x, targets=[[0, 1]] * 3).maps
        with ThreadPoolExecutor(max_workers=3) as pool:
            for other in pool.map(lambda _: cam(x, targets=[[0, 1]] * 3).maps, range(6)):
                assert torch.equal(other, maps)
    assert seen and not any(seen)
    activation = model.conv2(model.conv1(x).relu()).detach().requires_grad_(True)
    scores = model.head(activation.relu().mean((2, 3)))[:, :2]
    gradients = per_target_gradients(scores, activation)
    torch.testing.assert_close(maps, grad_cam_maps(activation.detach(), gradients)[0])
    assert not frozen.requires_grad
    assert all(p.requires_grad for p in model.parameters() if p is not frozen)
