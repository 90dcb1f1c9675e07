"""Reference values of synthetic datasets, computed without the storage."""

from __future__ import annotations

import numpy as np

from torchrl_ext.synthetic import episode_length, obs_value


def reference_rows(episodes: int, length) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(episode, step, next-observation value) of every global row of a synthetic dataset."""
    ep, st, nxt = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for e in range(episodes):
        n = episode_length(e, length)
        steps = np.arange(n)
        ep.append(np.full(n, e))
        st.append(steps)
        v = obs_value(e, steps + 1).astype(np.int64)
        if e % 2:  # odd episodes store no final observation
            v[-1] = 0
        nxt.append(v)
    return np.concatenate(ep), np.concatenate(st), np.concatenate(nxt)


def check_rows(td, rows: np.ndarray, ref, obs_size: int = 6) -> None:
    """Asserts every value of a sampled TensorDict against the reference of its rows."""
    ep, st, nxt = ref
    rows = np.asarray(rows)
    np.testing.assert_array_equal(td["episode"].numpy(), ep[rows])
    np.testing.assert_array_equal(td["step"].numpy(), st[rows])
    flat = rows.shape + (obs_size,)  # values per observation
    obs = td["observation"].numpy().reshape(flat)
    np.testing.assert_array_equal(obs, np.broadcast_to(obs_value(ep[rows], st[rows])[..., None], obs.shape))
    nobs = td["next", "observation"].numpy().reshape(flat)
    np.testing.assert_array_equal(nobs, np.broadcast_to(nxt[rows][..., None], nobs.shape))
    np.testing.assert_allclose(td["next", "reward"].numpy()[..., 0], ep[rows] + st[rows] / 1000.0, rtol=1e-6)
