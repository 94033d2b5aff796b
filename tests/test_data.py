"""collect -> HDF5 -> clips round-trips with the right shapes, order and normalisation."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from lewm_core.data.collect import CollectSpec, collect
from lewm_core.data.dataset import ClipDataset, dataset_info, open_dataset, split_episodes
from lewm_core.envs import make
from lewm_core.errors import UserError


def test_file_layout_and_metadata(tworoom_h5):
    with open_dataset(tworoom_h5) as f:
        assert f["pixels"].shape == (3600, 64, 64, 3) and f["pixels"].dtype == np.uint8
        assert f["pixels"].chunks is not None and f["pixels"].compression == "lzf"
        assert f["action"].shape == (3600, 2)
        assert np.abs(f["action"][:]).max() <= 1.0
        assert list(f["ep_offset"][:5]) == [0, 60, 120, 180, 240]
        assert set(f["ep_len"][:]) == {60}
        assert f.attrs["env"] == "tworoom" and f.attrs["resolution"] == 64
        quantities = json.loads(f.attrs["state_quantities"])
        assert quantities["agent_pos"] == [0, 2]
        assert f["state"].shape[1] == sum(size for _, size in quantities.values())


def test_stored_sim_state_reproduces_frames(tworoom_h5):
    """Row t's sim_state renders row t's pixels: the dataset can seed evaluation episodes."""
    env = make("tworoom", resolution=64)
    env.reset(seed=0)
    with open_dataset(tworoom_h5) as f:
        for row in (0, 59, 61, 1234):
            env.unwrapped.set_state(f["sim_state"][row])
            np.testing.assert_array_equal(env.unwrapped.render(), f["pixels"][row])


def test_clips_shapes_spacing_and_normalisation(tworoom_h5):
    train = ClipDataset(tworoom_h5, "train")
    val = ClipDataset(tworoom_h5, "val", action_stats=train.action_stats)
    # 60-step episodes, clip span 3*5 + 5 = 20 raw steps -> 41 clips per episode.
    assert len(train) == 41 * len(train.episodes) and len(val) == 41 * len(val.episodes)
    assert not set(train.episodes) & set(val.episodes)
    item = train[7]
    assert item["pixels"].shape == (4, 64, 64, 3) and item["actions"].shape == (4, 10)
    rows = train.clip_rows(7)
    assert list(np.diff(rows)) == [5, 5, 5]
    with h5py.File(tworoom_h5) as f:
        np.testing.assert_array_equal(item["pixels"].numpy(), f["pixels"][rows])
        raw = f["action"][rows[1] : rows[1] + 5]
    np.testing.assert_allclose(
        item["actions"][1].numpy(), train.action_stats.normalize(raw).reshape(-1), rtol=1e-6
    )
    batch = train.batch(np.array([0, 7, 40]))
    assert batch["pixels"].shape == (3, 4, 64, 64, 3)
    np.testing.assert_array_equal(batch["actions"][1].numpy(), item["actions"].numpy())
    all_actions = np.concatenate([train.batch(np.arange(len(train)))["actions"].numpy()])
    assert abs(all_actions.mean()) < 0.1 and 0.8 < all_actions.std() < 1.2


def test_lazy_and_preloaded_agree(tworoom_h5):
    lazy, eager = ClipDataset(tworoom_h5, preload=False), ClipDataset(tworoom_h5, preload=True)
    idx = np.array([3, 100, 999])
    for key in ("pixels", "actions"):
        np.testing.assert_array_equal(lazy.batch(idx)[key].numpy(), eager.batch(idx)[key].numpy())


def test_splits_share_one_preloaded_pixel_array(tworoom_h5, tmp_path):
    """A val split given the train split's pixels holds no second copy and reads the same clips."""
    train = ClipDataset(tworoom_h5, "train", preload=True)
    shared = ClipDataset(tworoom_h5, "val", pixels=train.pixels)
    assert shared.pixels is train.pixels
    lazy = ClipDataset(tworoom_h5, "val", preload=False)
    assert lazy.pixels is None
    idx = np.arange(0, len(lazy), 97)
    np.testing.assert_array_equal(shared.batch(idx)["pixels"], lazy.batch(idx)["pixels"])
    other = collect(CollectSpec("tworoom", episodes=2, steps=20, seed=3), tmp_path / "o.h5")
    with pytest.raises(UserError, match="not the pixels of"):
        ClipDataset(other, "val", pixels=train.pixels)


def test_preloaded_training_holds_one_copy_of_the_pixels(tworoom_h5, tmp_path):
    from lewm_core.training.config import TrainConfig
    from lewm_core.training.trainer import Trainer

    cfg = TrainConfig.from_preset("lab", tworoom_h5, str(tmp_path / "run"), max_steps=1)
    trainer = Trainer(cfg)  # the test dataset is far under the 4 GB preload limit
    assert trainer.train_set.pixels is not None
    assert trainer.val_set.pixels is trainer.train_set.pixels


def test_worker_count_does_not_change_the_data(tmp_path):
    spec = CollectSpec("tworoom", episodes=6, steps=20, seed=3)
    a = collect(spec, tmp_path / "one.h5", workers=1)
    b = collect(spec, tmp_path / "two.h5", workers=2)
    with h5py.File(a) as fa, h5py.File(b) as fb:
        for key in ("pixels", "action", "sim_state"):
            np.testing.assert_array_equal(fa[key][:], fb[key][:])
    assert dataset_info(a)["num_episodes"] == 6


def test_a_named_data_policy_is_collected_and_recorded(tmp_path):
    """`--policy expert` runs Push-T's goal-directed pusher (other actions than the default
    policy's from the same seeds) and says so in the file; an unknown policy is refused first."""
    spec = CollectSpec("pusht", episodes=2, steps=30, resolution=32, seed=3)
    default = collect(spec, tmp_path / "default.h5")
    expert = collect(
        CollectSpec("pusht", episodes=2, steps=30, resolution=32, seed=3, policy="expert"),
        tmp_path / "expert.h5",
    )
    with h5py.File(default) as fd, h5py.File(expert) as fe:
        assert fd.attrs["policy"] == "lewm_core.envs.make_policy('pusht')"
        assert fe.attrs["policy"] == "lewm_core.envs.make_policy('pusht', policy='expert')"
        np.testing.assert_array_equal(fd["sim_state"][0], fe["sim_state"][0])  # same start
        assert not np.array_equal(fd["action"][:], fe["action"][:])
    with pytest.raises(UserError, match="--policy 'expert': tworoom has the data policies default"):
        collect(CollectSpec("tworoom", 2, 10, policy="expert"), tmp_path / "no.h5")
    assert not (tmp_path / "no.h5").exists()


def test_split_is_by_episode_and_seeded():
    tr, va = split_episodes(100, 0.1, seed=0)
    assert len(va) == 10 and not set(tr) & set(va) and len(tr) + len(va) == 100
    assert np.array_equal(va, split_episodes(100, 0.1, seed=0)[1])


def test_existing_output_is_not_touched(tworoom_h5, tmp_path):
    out = tmp_path / "keep.h5"
    out.write_bytes(b"precious")
    with pytest.raises(UserError, match="--overwrite"):
        collect(CollectSpec("tworoom", 2, 10), out)
    assert out.read_bytes() == b"precious"


@pytest.mark.parametrize(
    "content, message",
    [
        (b"not an hdf5 file at all", "not a readable HDF5"),
        (None, "not a LeWM dataset"),
        ("truncate", "HDF5|damaged|inconsistent"),
    ],
)
def test_bad_datasets_are_refused(tworoom_h5, tmp_path, content, message):
    path = tmp_path / "bad.h5"
    if content is None:
        with h5py.File(path, "w") as f:
            f["x"] = np.zeros(3)
    elif content == "truncate":
        data = open(tworoom_h5, "rb").read()
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(content)
    with pytest.raises(UserError, match=message):
        ClipDataset(path)
