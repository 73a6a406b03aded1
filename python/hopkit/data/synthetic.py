"""Synthetic implicit-feedback data with power-law degrees and communities."""

from __future__ import annotations

import numpy as np

from ..csr import CSR


def synthetic(n_users, n_items, n_interactions, seed=0, n_communities=32, p_community=0.8,
              user_alpha=0.75, item_alpha=0.9) -> CSR:
    """A users x items interaction CSR (values None, no duplicate pairs).

    User activity and item popularity follow Zipf-like laws (exponents
    ``user_alpha`` and ``item_alpha``), so degrees are power-law like real
    recommender data (Gowalla, Yelp2018). Users and items belong to one of
    ``n_communities`` latent communities; a fraction ``p_community`` of each
    user's interactions is drawn from items of the user's community (by
    popularity), the rest from the whole catalogue. A collaborative model
    therefore scores far above popularity. Exactly ``n_interactions`` distinct
    pairs are returned (capped at what the sizes allow); every user has at
    least one interaction.
    """
    if min(n_users, n_items) <= 0 or n_interactions < n_users:
        raise ValueError("synthetic: need n_users, n_items > 0 and n_interactions >= n_users, "
                         f"got {n_users}, {n_items}, {n_interactions}")
    n_interactions = min(int(n_interactions), n_users * n_items)
    rng = np.random.default_rng(seed)
    w_user = rng.permutation(1.0 / np.arange(1, n_users + 1) ** user_alpha)
    w_item = rng.permutation(1.0 / np.arange(1, n_items + 1) ** item_alpha)
    c_user = rng.integers(0, n_communities, n_users)
    c_item = rng.integers(0, n_communities, n_items)
    # items grouped by community, with per-community popularity CDFs
    order = np.lexsort((np.arange(n_items), c_item))
    bounds = np.searchsorted(c_item[order], np.arange(n_communities + 1))
    cdf = np.cumsum(w_item[order])
    glob_cdf = np.cumsum(w_item)

    def draw(m):
        users = np.r_[np.arange(n_users), rng.choice(n_users, m - n_users, p=w_user / w_user.sum())]
        comm = c_user[users]
        lo, hi = bounds[comm], bounds[comm + 1]
        local = rng.random(m) < p_community
        local &= hi > lo
        base = np.where(lo > 0, cdf[np.maximum(lo - 1, 0)], 0.0)
        top = cdf[np.maximum(hi - 1, 0)]
        u = base + rng.random(m) * (top - base)
        items_local = order[np.minimum(np.searchsorted(cdf, u, side="right"), n_items - 1)]
        items_glob = np.minimum(np.searchsorted(glob_cdf, rng.random(m) * glob_cdf[-1],
                                                side="right"), n_items - 1)
        return users, np.where(local, items_local, items_glob)

    key = np.empty(0, dtype=np.int64)
    m = int(n_interactions * 1.3) + n_users
    for _ in range(8):  # popular pairs repeat: draw until enough distinct pairs
        users, items = draw(m)
        key = np.union1d(key, users.astype(np.int64) * n_items + items)
        if key.shape[0] >= n_interactions:
            break
        m = max(n_users + 1, int((n_interactions - key.shape[0]) * 2.0) + n_users)
    # keep every user's first pair, then a random subset of the rest
    first = np.unique(key // n_items, return_index=True)[1]
    rest = np.setdiff1d(np.arange(key.shape[0]), first)
    take = rng.permutation(rest)[: max(0, n_interactions - first.shape[0])]
    key = np.sort(key[np.r_[first, take]])
    return CSR.from_coo((key // n_items).astype(np.int32), (key % n_items).astype(np.int32),
                        shape=(n_users, n_items))


def gowalla_like(seed=0) -> CSR:
    """Gowalla's shape: 29,858 users, 40,981 items, 1,027,370 interactions
    (the (U+I) symmetric adjacency has ~2.05M nonzeros)."""
    return synthetic(29858, 40981, 1027370, seed=seed)
