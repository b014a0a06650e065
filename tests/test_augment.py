import math

import pytest
import torch

from mnistlite.augment import AugmentSpec, BatchAugment, apply_affine, random_affine_matrices


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
