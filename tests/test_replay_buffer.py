"""Tests of the per-task replay buffer (envs.replay_buffer)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import scipy.stats
import torch

from envs import MultiTaskReplayBuffer, TransitionBatch

T, OBS, ACT = 3, 5, 2


def transition(step: int, num_tasks: int = T) -> dict[str, np.ndarray]:
    """Transition number ``step`` of every task, its (task, step) encoded in the values."""
    code = np.arange(num_tasks)[:, None] * 1000.0 + step
    return {
        "obs": np.repeat(code, OBS, axis=1),
        "actions": np.repeat(code, ACT, axis=1),
        "rewards": code[:, 0] + 0.5,
        "next_obs": np.repeat(code + 1, OBS, axis=1),
        "terminated": np.full(num_tasks, step % 3 == 0),
        "truncated": np.full(num_tasks, step % 3 == 1),
    }


def filled(capacity_per_task: int, steps: int, seed: int = 0) -> MultiTaskReplayBuffer:
    buffer = MultiTaskReplayBuffer(T, OBS, ACT, capacity=T * capacity_per_task, seed=seed)
    for step in range(steps):
        buffer.add(**transition(step))
    return buffer


def decode(batch: TransitionBatch) -> tuple[np.ndarray, np.ndarray]:
    """Task id and step of every sampled transition, each [T, B]."""
    code = batch.obs[..., 0].numpy()
    return code // 1000, code % 1000


def test_sample_shapes_and_rows_belong_to_their_task():
    buffer = filled(capacity_per_task=10, steps=7)
    batch = buffer.sample(16)
    assert batch.obs.shape == (T, 16, OBS) and batch.next_obs.shape == (T, 16, OBS)
    assert batch.actions.shape == (T, 16, ACT)
    assert batch.rewards.shape == (T, 16) and batch.dones.shape == (T, 16)
    assert all(x.dtype == torch.float32 for x in batch)
    task, step = decode(batch)
    np.testing.assert_array_equal(task, np.broadcast_to(np.arange(T)[:, None], (T, 16)))
    assert set(step.ravel()) <= set(range(7))
    # Every field of one sampled slot comes from the same stored transition.
    code = batch.obs[..., 0]
    torch.testing.assert_close(batch.actions[..., 0], code)
    torch.testing.assert_close(batch.rewards, code + 0.5)
    torch.testing.assert_close(batch.next_obs[..., 0], code + 1)


def test_dones_are_terminations_only():
    buffer = filled(capacity_per_task=12, steps=12)
    batch = buffer.sample(64)
    _, step = decode(batch)
    np.testing.assert_array_equal(batch.dones.numpy(), (step % 3 == 0).astype(np.float32))
    assert (batch.dones[torch.as_tensor(step % 3 == 1)] == 0).all()  # truncated: bootstraps
    assert buffer.truncated[:, :12].sum() == T * 4


def test_ring_overwrites_oldest_and_sampling_is_uniform():
    buffer = filled(capacity_per_task=4, steps=6)
    assert len(buffer) == T * 4 and buffer.size_per_task == 4 and buffer.position == 6 % 4
    counts = np.zeros((T, 6))
    for _ in range(60):
        _, step = decode(buffer.sample(200))
        for t in range(T):
            counts[t] += np.bincount(step[t].astype(int), minlength=6)
    assert (counts[:, :2] == 0).all()  # steps 0 and 1 were overwritten
    # Pearson's chi-square against uniform over the 4 live slots, per task: 12,000 draws put a
    # slot drawn 20 % too often (probabilities 6:5:5:5) at a statistic of ~85 on average,
    # far above the threshold (31, p = 1e-6 under uniform sampling).
    threshold = scipy.stats.chi2.isf(1e-6, df=3)
    for t in range(T):
        statistic, _ = scipy.stats.chisquare(counts[t, 2:])
        assert statistic < threshold, f"task {t}: slot counts {counts[t, 2:]} are not uniform"


def test_same_seed_same_samples_and_exact_save_load():
    a = filled(capacity_per_task=8, steps=5, seed=7)
    b = filled(capacity_per_task=8, steps=5, seed=7)
    for x, y in zip(a.sample(9), b.sample(9), strict=True):
        torch.testing.assert_close(x, y)
    a.sample(3)  # advance the RNG before saving
    stream = io.BytesIO()
    torch.save(a.state_dict(), stream)
    restored = filled(capacity_per_task=8, steps=8, seed=99)  # other contents and RNG
    stream.seek(0)
    restored.load_state_dict(torch.load(stream))
    assert len(restored) == len(a) and restored.position == a.position
    for field in MultiTaskReplayBuffer.STORAGE_FIELDS:
        torch.testing.assert_close(getattr(restored, field), getattr(a, field))
    for x, y in zip(a.sample(11), restored.sample(11), strict=True):
        torch.testing.assert_close(x, y)
    for step in range(5, 12):  # writes continue at the same slots, wrapping around
        a.add(**transition(step))
        restored.add(**transition(step))
    for field in MultiTaskReplayBuffer.STORAGE_FIELDS:
        torch.testing.assert_close(getattr(restored, field), getattr(a, field))


def test_full_buffer_round_trip():
    a = filled(capacity_per_task=4, steps=9)
    state = a.state_dict()
    b = MultiTaskReplayBuffer(T, OBS, ACT, capacity=T * 4, seed=1)
    b.load_state_dict(state)
    torch.testing.assert_close(b.obs, a.obs)
    assert b.position == a.position == 1 and len(b) == len(a)


def test_incompatible_state_and_bad_inputs():
    buffer = filled(capacity_per_task=4, steps=2)
    other = MultiTaskReplayBuffer(T, OBS + 1, ACT, capacity=T * 4)
    with pytest.raises(ValueError, match="obs_dim is 5 in the state, 6 here"):
        other.load_state_dict(buffer.state_dict())
    with pytest.raises(ValueError, match="not a MultiTaskReplayBuffer state"):
        buffer.load_state_dict({"obs": 1})
    step = transition(0)
    with pytest.raises(ValueError, match=r"obs must have shape \[3, 5\]"):
        buffer.add(**{**step, "obs": np.zeros((2, OBS))})
    with pytest.raises(ValueError, match="rewards contains NaN"):
        buffer.add(**{**step, "rewards": np.array([0.0, np.nan, 1.0])})
    with pytest.raises(ValueError, match="empty"):
        MultiTaskReplayBuffer(T, OBS, ACT, capacity=12).sample(4)
    with pytest.raises(ValueError, match="capacity 2 is smaller than num_tasks 3"):
        MultiTaskReplayBuffer(T, OBS, ACT, capacity=2)
    with pytest.raises(ValueError, match="batch_size_per_task"):
        buffer.sample(0)


def test_accepts_tensors_and_counts_memory():
    buffer = MultiTaskReplayBuffer(T, OBS, ACT, capacity=T * 3)
    step = {k: torch.as_tensor(v) for k, v in transition(0).items()}
    buffer.add(**step)
    torch.testing.assert_close(buffer.sample(2).obs[:, 0], step["obs"].float())
    # MT10 sizes: 1e6 transitions must fit in ~0.5 GB (bytes per transition from the dtypes).
    mt10 = MultiTaskReplayBuffer(10, 49, 4, capacity=100_000)
    per_transition = 2 * 49 * 4 + 4 * 4 + 4 + 1 + 1
    assert mt10.nbytes() == 100_000 * per_transition
    assert per_transition * 1_000_000 <= 0.5e9


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_buffer_samples_like_cpu():
    cpu = filled(capacity_per_task=6, steps=6, seed=3)
    gpu = MultiTaskReplayBuffer(T, OBS, ACT, capacity=T * 6, device="cuda", seed=3)
    for step in range(6):
        gpu.add(**transition(step))
    for x, y in zip(cpu.sample(8), gpu.sample(8), strict=True):
        assert y.device.type == "cuda"
        torch.testing.assert_close(x, y.cpu())
