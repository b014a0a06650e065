import math

import pytest
import torch

from mnistlite.augment import AugmentSpec, BatchAugment, apply_affine, random_affine_matrices, random_displacements


def _batch(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, 28, 28)
    x[:, :, 8:20, 12:16] = torch.rand(n, 1, 12, 4, generator=g) + 1  # a bar, like a "1"
    return x


def test_no_augmentation_is_identity_object():
    x = _batch()
    assert BatchAugment(AugmentSpec(), fill=0.0)(x) is x


def test_zero_angle_warp_is_identity():
    x = _batch()
    theta = random_affine_matrices(len(x), AugmentSpec(rotation=0.0, crop_p=0.0))
    assert torch.allclose(apply_affine(x, theta), x, atol=1e-5)


def test_samples_in_a_batch_differ_and_labels_untouched():
    x = _batch(8)
    x = x[:1].repeat(8, 1, 1, 1)  # eight copies of one image
    y = torch.arange(8)
    y_before = y.clone()
    out = BatchAugment(AugmentSpec(rotation=15), fill=0.0, generator=torch.Generator().manual_seed(1))(x)
    assert torch.equal(y, y_before)
    diffs = [(out[i] - out[0]).abs().max().item() for i in range(1, 8)]
    assert min(diffs) > 1e-3, "every sample needs its own random draw"


def test_same_seed_same_output_different_seed_different():
    x = _batch()
    spec = AugmentSpec(rotation=15, translate=0.1, scale=0.1, shear=5, crop_p=0.5)
    a = BatchAugment(spec, 0.0, torch.Generator().manual_seed(3))(x)
    b = BatchAugment(spec, 0.0, torch.Generator().manual_seed(3))(x)
    c = BatchAugment(spec, 0.0, torch.Generator().manual_seed(4))(x)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_rotation_by_90_degrees_matches_rot90():
    x = torch.arange(28 * 28, dtype=torch.float32).reshape(1, 1, 28, 28)
    a = math.radians(90)
    theta = torch.tensor([[[math.cos(a), math.sin(a), 0.0], [-math.sin(a), math.cos(a), 0.0]]])
    out = apply_affine(x, theta)
    # A quarter turn of a square grid lands pixel centres on pixel centres.
    assert torch.allclose(out, torch.rot90(x, 1, (2, 3)), atol=1e-3) or torch.allclose(
        out, torch.rot90(x, -1, (2, 3)), atol=1e-3
    )


def test_centre_crop_zoom_matches_crop_then_resize():
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 1, 28, 28, generator=g)
    theta = random_affine_matrices(1, AugmentSpec(crop_p=1.0, crop_size=22))
    out = apply_affine(x, theta)
    ref = F.interpolate(x[:, :, 3:25, 3:25], size=(28, 28), mode="bilinear", align_corners=False)
    # The outermost ring differs: interpolate clamps at the crop's edge, while the
    # warp reads the real neighbouring pixels. Everything inside is the same.
    assert torch.allclose(out[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1], atol=1e-4)


def test_fill_value_pads_borders():
    x = torch.full((4, 1, 28, 28), -0.4242)
    out = BatchAugment(
        AugmentSpec(rotation=30, translate=0.2), fill=-0.4242, generator=torch.Generator().manual_seed(0)
    )(x)
    assert torch.allclose(out, x, atol=1e-5)


@pytest.mark.parametrize("shape", [(5, 28, 28), (3, 13, 20)])
def test_affine_grid_matches_torch(shape):
    """Our batched-matmul grid is torch's affine_grid (align_corners=False), faster."""
    import torch.nn.functional as F

    from mnistlite.augment import affine_grid

    n, h, w = shape
    theta = torch.randn(n, 2, 3, generator=torch.Generator().manual_seed(0))
    ref = F.affine_grid(theta, [n, 1, h, w], align_corners=False)
    assert torch.allclose(affine_grid(theta, n, h, w), ref, atol=1e-5)


# --- elastic distortions -----------------------------------------------------


def _old_augment(x, spec, seed, fill):
    """The augmenter as it was before elastic existed: one affine warp, torch's grid."""
    g = torch.Generator().manual_seed(seed)
    theta = random_affine_matrices(len(x), spec, g)
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    out = torch.nn.functional.grid_sample(x - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out + fill, g


def test_elastic_off_is_bit_identical_to_the_affine_warp_alone():
    x = _batch(32)
    spec = AugmentSpec(rotation=8, translate=0.08, scale=0.08)  # the flagship's recipe
    assert spec.elastic_alpha == 0  # the default is off
    g = torch.Generator().manual_seed(3)
    out = BatchAugment(spec, fill=-0.4242, generator=g)(x)
    want, g_old = _old_augment(x, spec, 3, -0.4242)
    assert torch.allclose(out, want, atol=1e-4)  # our matmul grid vs torch's affine_grid: a sanity check
    theta = random_affine_matrices(len(x), spec, torch.Generator().manual_seed(3))
    assert torch.equal(out, apply_affine(x, theta, -0.4242))  # the very same computation
    # ...and no extra random draws: the batch order drawn after it is unchanged.
    assert torch.equal(g.get_state(), g_old.get_state())


def test_elastic_only_spec_is_active():
    assert AugmentSpec(elastic_alpha=8).active and not AugmentSpec(elastic_alpha=8).affine
    x = _batch(4)
    out = BatchAugment(AugmentSpec(elastic_alpha=8, elastic_sigma=3), 0.0, torch.Generator().manual_seed(0))(x)
    assert out.shape == x.shape and not torch.equal(out, x)


@pytest.mark.slow
def test_displacement_field_shape_and_statistics():
    alpha, sigma = 16.0, 4.0
    d = random_displacements(2000, 28, 28, alpha, sigma, torch.Generator().manual_seed(0))
    assert d.shape == (2000, 28, 28, 2)
    interior = d[:, 12:16, 12:16]  # the centre: the zero padding past the edges shrinks the field there
    assert abs(interior.mean().item()) < 0.05
    # Smoothing uniform noise (variance 1/3) by a normalised 2-D Gaussian
    # leaves a variance of 1/3 * sum(k2d**2), k2d the outer product of the taps.
    from mnistlite.augment import _gaussian_kernel

    k = _gaussian_kernel(sigma, "cpu", torch.float32)
    want_sd = alpha * math.sqrt((k**2).sum().item() ** 2 / 3)
    assert interior.std().item() == pytest.approx(want_sd, rel=0.05)
    # Linear in alpha: the same draw at twice the alpha is twice the field.
    d2 = random_displacements(2000, 28, 28, 2 * alpha, sigma, torch.Generator().manual_seed(0))
    assert torch.allclose(d2, 2 * d, atol=1e-5)


def test_displacement_field_is_smooth():
    g = torch.Generator().manual_seed(0)
    d = random_displacements(500, 28, 28, 16.0, 4.0, g)
    a, b = d[:, 10:18, 10:17].flatten(), d[:, 10:18, 11:18].flatten()  # horizontal neighbours
    assert torch.corrcoef(torch.stack([a, b]))[0, 1] > 0.95
    # Far apart (12 px = 3 sigma) the field is nearly independent.
    far = torch.corrcoef(torch.stack([d[:, 14, 2].flatten(), d[:, 14, 14].flatten()]))[0, 1]
    assert abs(far) < 0.2


def test_elastic_is_deterministic_under_a_seed():
    x = _batch(8)
    spec = AugmentSpec(rotation=8, elastic_alpha=16, elastic_sigma=4)

    def run(seed):
        return BatchAugment(spec, 0.0, torch.Generator().manual_seed(seed))(x)

    assert torch.equal(run(5), run(5))
    assert not torch.equal(run(5), run(6))


def test_displacement_is_in_input_pixels_in_the_same_grid_sample():
    x = _batch(2)
    identity = random_affine_matrices(2, AugmentSpec())
    zero = torch.zeros(2, 28, 28, 2)
    assert torch.equal(apply_affine(x, identity, 0.0, zero), apply_affine(x, identity, 0.0))
    # Every output pixel reading one pixel to its right is a shift left by one pixel.
    one_right = zero.clone()
    one_right[..., 0] = 1.0
    out = apply_affine(x, identity, 0.0, one_right)
    assert torch.allclose(out[..., :, :-1], x[..., :, 1:], atol=1e-5)


def test_elastic_takes_the_device_argument():
    # The CUDA path passes the images' device; here it is an explicit torch.device on the CPU.
    dev = torch.device("cpu")
    g = torch.Generator(device=dev).manual_seed(0)
    d = random_displacements(3, 28, 28, 8.0, 3.0, g, device=dev, dtype=torch.float64)
    assert d.device == dev and d.dtype == torch.float64
    x = _batch(3).to(dev)
    out = BatchAugment(AugmentSpec(elastic_alpha=8, elastic_sigma=3), 0.0, torch.Generator(device=dev).manual_seed(0))(
        x
    )
    assert out.device == dev and out.shape == x.shape


@pytest.mark.parametrize(
    "field, value, match",
    [("elastic_alpha", -1.0, "--elastic-alpha must be 0 or more"), ("elastic_sigma", 0.0, "--elastic-sigma")],
)
def test_bad_elastic_values_are_one_line_errors(field, value, match):
    from mnistlite.config import TrainConfig
    from mnistlite.errors import MnistliteError

    with pytest.raises(MnistliteError, match=match):
        TrainConfig().replace(**{field: value})
