"""Parameter counts on the original 61x73x61 grid, computed independently of Keras."""

import numpy as np
import pytest

from mri3dcnn.models import FAMILIES, build

GRID = (61, 73, 61)


def conv(k, cin, cout):
    return int(np.prod(k)) * cin * cout + cout


def pooled(shape, n):
    for _ in range(n):
        shape = tuple(s // 3 for s in shape)  # pool 3, stride 3, valid
    return int(np.prod(shape))


def module(cin):
    towers = 4 * conv(1, cin, 32)  # three 1x1x1 reductions/projections + the 1x1x1 tower
    factorised = 3 * conv(3, 32, 32) + 3 * conv(5, 32, 32)
    return towers + factorised


def expected(name):
    if name.startswith("sequential"):
        d = int(name[-1])
        convs = conv(27, 1, 32) + (d - 1) * conv(27, 32, 32)
        return convs + (32 * pooled(GRID, d)) * 128 + 128 + 128 * 2 + 2
    head = conv(1, 128, 32) + 32 * pooled(GRID, 1) * 2 + 2
    stem = conv(27, 1, 32)
    if name == "inception_1":
        return stem + module(32) + head
    if name == "inception_2":
        return stem + module(32) + module(128) + head
    if name == "inception_resnet_1":
        return stem + conv(1, 32, 128) + module(32) + head
    if name == "inception_resnet_2":
        return stem + conv(1, 32, 128) + module(32) + module(128) + head
    raise KeyError(name)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_parameter_counts(name):
    assert build(name, ["gm"], GRID, compile=False).count_params() == expected(name)


def test_sequential_2_matches_the_hand_count():
    # 896 + 27,680 + 1,179,776 + 258 on the 61x73x61 grid
    assert expected("sequential_2") == 1_208_610


def test_published_resnet_2_equals_resnet_1():
    pub = build("inception_resnet_2", ["gm"], GRID, published_wiring=True, compile=False)
    assert pub.count_params() == expected("inception_resnet_1")


def test_branch_and_channel_fusion():
    grid = (23, 28, 23)
    branch = build("sequential_2", ["gm", "wm", "fa"], grid)
    assert len(branch.inputs) == 3
    single = build("sequential_2", ["gm"], grid)
    convs = conv(27, 1, 32) + conv(27, 32, 32)
    flat = 32 * pooled(grid, 2)
    assert single.count_params() == convs + flat * 128 + 128 + 258
    assert branch.count_params() == 3 * convs + 3 * flat * 128 + 128 + 258
    channel = build("sequential_2", ["gm", "wm", "fa"], grid, fusion="channel")
    assert len(channel.inputs) == 1 and channel.inputs[0].shape[-1] == 3
    assert channel.count_params() == single.count_params() + 2 * 27 * 32


def test_unknown_names():
    with pytest.raises(ValueError, match="Unknown model"):
        build("resnet50", ["gm"], GRID)
    with pytest.raises(ValueError, match="Unknown fusion"):
        build("sequential_1", ["gm"], GRID, fusion="late")
