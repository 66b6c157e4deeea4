import numpy as np
import pytest
import torch

from metasparse.data.patches import from_patches, pad_to_multiple, random_patches, to_patches
from metasparse.data.tiling import patch_grid


def rand_image(h, w, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (h, w, c), generator=g, dtype=torch.uint8)


@pytest.mark.parametrize(
    ("h", "w", "grid"),
    [(33, 70, (2, 3)), (1, 1, (1, 1)), (512, 768, (16, 24)), (64, 64, (2, 2)), (31, 32, (1, 1))],
)
def test_round_trip(h, w, grid):
    img = rand_image(h, w)
    patches, g, padded = to_patches(img, 32)
    assert g == grid and padded == (grid[0] * 32, grid[1] * 32)
    assert patches.shape == (grid[0] * grid[1], 32, 32, 3) and patches.dtype == torch.uint8
    assert torch.equal(from_patches(patches, g, (h, w)), img)


def test_kodak_size_gives_384_patches():
    patches, grid, _ = to_patches(torch.zeros(512, 768, 3), 32)  # a 768x512 photo
    assert patches.shape[0] == 384 and grid == (16, 24)


def test_raster_order_and_edge_padding():
    img = rand_image(40, 70)
    patches, grid, _ = to_patches(img, 32)
    assert torch.equal(patches[1], img[0:32, 32:64])  # second patch: top row, second column
    assert torch.equal(patches[grid[1]][:8], img[32:40, 0:32])  # first patch of the second row
    last = patches[-1]  # rows 32..63, cols 64..95 of the padded image
    assert torch.equal(last[:8, :6], img[32:40, 64:70])
    assert torch.equal(last[8:, :6], img[39:40, 64:70].expand(24, 6, 3))  # bottom edge repeated
    assert torch.equal(last[:8, 6:], img[32:40, 69:70].expand(8, 26, 3))  # right edge repeated
    assert torch.equal(last[8:, 6:], img[39, 69].expand(24, 26, 3))  # corner pixel


def test_other_patch_sizes_dtypes_and_numpy():
    img = torch.rand(10, 13, 1)
    patches, grid, padded = to_patches(img, 4)
    assert grid == (3, 4) and padded == (12, 16) and patches.dtype == torch.float32
    assert torch.equal(from_patches(patches, grid, (10, 13)), img)
    arr = np.arange(5 * 6 * 3, dtype=np.uint8).reshape(5, 6, 3)
    p, g, _ = to_patches(arr, 8)
    assert np.array_equal(from_patches(p, g, (5, 6)).numpy(), arr)
    assert patch_grid(33, 70) == ((2, 3), (64, 96))
    assert pad_to_multiple(img, 1) is img


def test_errors():
    with pytest.raises(ValueError, match="H, W, C"):
        to_patches(torch.zeros(4, 4))
    with pytest.raises(ValueError, match="empty"):
        to_patches(torch.zeros(0, 4, 3))
    with pytest.raises(ValueError, match="patch size"):
        to_patches(torch.zeros(4, 4, 3), 0)
    patches, grid, _ = to_patches(rand_image(33, 70))
    with pytest.raises(ValueError, match="grid"):
        from_patches(patches[:-1], grid, (33, 70))
    with pytest.raises(ValueError, match="does not fit"):
        from_patches(patches, grid, (65, 70))


def coded_one(i, h, w):
    """An image whose pixels say where they are: value = i * 1e6 + y * 1000 + x."""
    y = torch.arange(h)[:, None]
    x = torch.arange(w)[None, :]
    return (i * 1_000_000 + y * 1000 + x)[:, :, None].expand(h, w, 2).clone()


def coded(n, h, w):
    return [coded_one(i, h, w) for i in range(n)]


def assert_real_crops(patches, sizes):
    for p in patches:
        base = int(p[0, 0, 0])
        i, y0, x0 = base // 1_000_000, (base // 1000) % 1000, base % 1000
        h, w = sizes[i]
        ys = torch.arange(y0, y0 + p.shape[0]).clamp(max=h - 1)[:, None]
        xs = torch.arange(x0, x0 + p.shape[1]).clamp(max=w - 1)[None, :]
        assert torch.equal(p[:, :, 0], i * 1_000_000 + ys * 1000 + xs)


def test_random_patches_from_a_stack():
    stack = torch.stack(coded(4, 50, 40))
    g = torch.Generator().manual_seed(0)
    out = random_patches(stack, 16, 200, g)
    assert out.shape == (200, 16, 16, 2) and out.dtype == stack.dtype
    assert_real_crops(out, [(50, 40)] * 4)
    again = random_patches(stack, 16, 200, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    assert len({int(p[0, 0, 0]) // 1_000_000 for p in out}) == 4  # every image is used
    corners = {int(p[0, 0, 0]) % 1_000_000 for p in out}
    assert 0 in corners or len(corners) > 100  # positions spread over the image
    assert random_patches(stack, 16, 0).shape == (0, 16, 16, 2)


def test_random_patches_from_a_uint8_stack_and_numpy():
    u8 = torch.randint(0, 256, (3, 20, 20, 3), dtype=torch.uint8)
    out = random_patches(u8.numpy(), 8, 5, torch.Generator().manual_seed(1))
    assert out.shape == (5, 8, 8, 3) and out.dtype == torch.uint8


def test_random_patches_from_differently_sized_images():
    sizes = [(50, 40), (33, 90), (16, 16), (10, 70)]  # the last one is smaller than the patch
    imgs = [coded_one(i, h, w) for i, (h, w) in enumerate(sizes)]
    g = torch.Generator().manual_seed(0)
    out = random_patches(imgs, 16, 300, g)
    assert out.shape == (300, 16, 16, 2)
    assert_real_crops(out, sizes)
    assert torch.equal(out, random_patches(imgs, 16, 300, torch.Generator().manual_seed(0)))
    # the full range of positions is reachable
    xs = {int(p[0, 0, 0]) % 1000 for p in out if int(p[0, 0, 0]) // 1_000_000 == 1}
    assert max(xs) > 60
    with pytest.raises(ValueError, match="no images"):
        random_patches([], 8, 3)
    with pytest.raises(ValueError, match="channel"):
        random_patches([torch.zeros(8, 8, 3), torch.zeros(8, 8, 1)], 8, 3)
