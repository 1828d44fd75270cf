"""Generalised advantage estimation (Schulman et al. 2016) over response tokens.

Position t of a row holds the value V_t of the state before target t and the reward r_t
for emitting it; `mask` marks the response positions (a contiguous span per row). With
δ_t = r_t + γ·V_{t+1} − V_t (V past the response is 0), the advantage is
A_t = δ_t + γλ·A_{t+1}, and the return A_t + V_t is what the value head regresses on.
"""

from __future__ import annotations

import numpy as np


def gae(rewards_BT: np.ndarray, values_BT: np.ndarray, mask_BT: np.ndarray, gamma: float,
        lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Advantages and returns, B×T, zero outside the mask."""
    rewards_BT, values_BT, mask_BT = (np.asarray(x, np.float64) for x in (rewards_BT, values_BT, mask_BT))
    batch, length = rewards_BT.shape
    advantages_BT = np.zeros((batch, length))
    next_value_B, next_advantage_B = np.zeros(batch), np.zeros(batch)
    for t in reversed(range(length)):
        delta_B = rewards_BT[:, t] + gamma * next_value_B - values_BT[:, t]
        advantages_BT[:, t] = (delta_B + gamma * lam * next_advantage_B) * mask_BT[:, t]
        next_value_B = values_BT[:, t] * mask_BT[:, t]
        next_advantage_B = advantages_BT[:, t]
    returns_BT = (advantages_BT + values_BT) * mask_BT
    return advantages_BT.astype(np.float32), returns_BT.astype(np.float32)


def whiten(values_BT: np.ndarray, mask_BT: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance over the masked entries (PPO's advantage normalisation)."""
    selected = values_BT[mask_BT > 0]
    if selected.size < 2:
        return values_BT * mask_BT
    return ((values_BT - selected.mean()) / (selected.std() + 1e-8) * mask_BT).astype(np.float32)
