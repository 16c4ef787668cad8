"""ResidualVQ: k-means init, monotone error in levels, EMA, dead-code restarts, exact round trips."""

from __future__ import annotations

import pytest
import torch

from musiclm_ref.quantize import ResidualVQ, kmeans, nearest

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: one torch thread per module


def blobs(n=2000, d=8, centers=32, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    c = torch.randn(centers, d, generator=g) * 4
    return c[torch.randint(centers, (n,), generator=g)] + 0.3 * torch.randn(n, d, generator=g)


def mse(a, b) -> float:
    return float((a - b).pow(2).sum(-1).mean())


def test_kmeans_init_beats_random_sample_init():
    x = blobs()
    errs = {}
    for iters in (0, 10):  # 0 iterations = codebook drawn at random from the data
        rvq = ResidualVQ(8, 1, 32, kmeans_iters=iters).seed(3).train()
        q, _, _ = rvq(x)
        errs[iters] = mse(q, x)
    assert errs[10] < 0.7 * errs[0]


def test_more_levels_lower_error_monotonically():
    x = torch.randn(1500, 8, generator=torch.Generator().manual_seed(1))
    rvq = ResidualVQ(8, 8, 32).fit(x, iters=8, seed=0).eval()
    codes = rvq.encode(x)
    errs = [mse(rvq.decode(codes[:, :n]), x) for n in range(1, 9)]
    assert all(b < a for a, b in zip(errs, errs[1:])), errs
    assert errs[-1] < 0.2 * errs[0]
    # encode(n_q) is a prefix of the full encode
    assert torch.equal(rvq.encode(x, n_q=3), codes[:, :3])


def test_fit_is_deterministic_for_a_seed():
    x = blobs(500)
    a = ResidualVQ(8, 3, 16).fit(x, iters=5, seed=7)
    b = ResidualVQ(8, 3, 16).fit(x, iters=5, seed=7)
    c = ResidualVQ(8, 3, 16).fit(x, iters=5, seed=8)
    assert torch.equal(a.codebooks, b.codebooks)
    assert not torch.equal(a.codebooks, c.codebooks)


def test_ema_update_moves_codes_towards_data():
    x = blobs(1000, centers=8)
    rvq = ResidualVQ(8, 1, 8, decay=0.5, dead_threshold=0.0).seed(0).train()
    rvq(x)  # k-means init
    before = rvq.codebooks.clone()
    shifted = x + 1.0
    for _ in range(5):
        rvq(shifted)
    after = rvq.codebooks
    assert not torch.equal(before, after)
    # codes followed the data: the error on the shifted data lost most of the shift's energy (8)
    rvq.eval()
    q_before = before[0][nearest(shifted, before[0])]
    assert mse(rvq.decode(rvq.encode(shifted)), shifted) < mse(q_before, shifted) - 0.8 * 8


def test_eval_mode_never_updates():
    x = blobs(500)
    rvq = ResidualVQ(8, 2, 16).fit(x, iters=3, seed=0).eval()
    before = rvq.codebooks.clone()
    rvq(x + 5)
    rvq.encode(x + 5)
    assert torch.equal(before, rvq.codebooks)


def test_dead_codes_get_restarted():
    x = blobs(800)
    rvq = ResidualVQ(8, 1, 16, decay=0.8, dead_threshold=1.0).seed(0).train()
    rvq(x)
    layer = rvq.layers[0]
    with torch.no_grad():
        layer.codebook[3] = 1e4  # a code no vector will ever pick
    far = layer.codebook[3].clone()
    for _ in range(20):  # its EMA usage decays below the threshold
        rvq(x)
    assert not torch.allclose(layer.codebook[3], far)
    # it was restarted onto (or next to) a data vector
    assert torch.cdist(layer.codebook[3:4], x).min() < 5.0


def test_round_trip_of_codebook_vectors_is_exact():
    x = blobs(600)
    rvq = ResidualVQ(8, 4, 16).fit(x, iters=5, seed=0).eval()
    book = rvq.layers[0].codebook
    idx = torch.arange(16)
    assert torch.equal(rvq.encode(book, n_q=1)[:, 0], idx)
    assert torch.equal(rvq.decode(idx[:, None]), book)
    codes = rvq.encode(x)
    q, codes_fwd, _ = rvq(x)
    assert torch.equal(codes, codes_fwd)
    assert torch.allclose(q, rvq.decode(codes), atol=1e-6)


def test_straight_through_gradient_and_commitment_loss():
    x = blobs(300).requires_grad_()
    rvq = ResidualVQ(8, 2, 16, commitment_weight=0.25).seed(0).train()
    q, codes, loss = rvq(x)
    assert codes.shape == (300, 2) and codes.dtype == torch.long
    assert loss.item() > 0
    (q.sum() + loss).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_shapes_keep_leading_dims():
    x = torch.randn(2, 5, 7, 8)
    rvq = ResidualVQ(8, 3, 4).train()
    q, codes, _ = rvq(x)
    assert q.shape == x.shape and codes.shape == (2, 5, 7, 3)
    assert rvq.decode(codes).shape == x.shape


def test_checkpoint_round_trip(tmp_path):
    x = blobs(300)
    rvq = ResidualVQ(8, 2, 16).fit(x, iters=3, seed=0)
    path = tmp_path / "rvq.pt"
    torch.save(rvq.to_dict(), path)
    back = ResidualVQ.from_dict(torch.load(path, weights_only=True))
    assert torch.equal(back.encode(x), rvq.eval().encode(x))


def test_clear_errors():
    rvq = ResidualVQ(8, 2, 16)
    with pytest.raises(RuntimeError, match="not initialised"):
        rvq.eval().encode(torch.randn(4, 8))
    rvq.fit(torch.randn(50, 8), iters=2)
    with pytest.raises(ValueError, match="dimension 8"):
        rvq.encode(torch.randn(4, 5))
    with pytest.raises(ValueError, match=r"n_q must be in \[1, 2\]"):
        rvq.encode(torch.randn(4, 8), n_q=3)
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 16\)"):
        rvq.decode(torch.tensor([[0, 16]]))
    with pytest.raises(ValueError, match="NaN"):
        ResidualVQ(8, 1, 4).fit(torch.full((10, 8), float("nan")))


def test_kmeans_counts_cover_all_points():
    x = blobs(400)
    c, counts = kmeans(x, 8, 5, torch.Generator().manual_seed(0))
    assert c.shape == (8, 8) and int(counts.sum()) == 400
