"""The serving index: a version's shoppers and goods as flat NumPy arrays, mapped by workers.

    serving/<version>/index/meta.json     format, version, blend weights, each array's
                                          dtype and shape
    serving/<version>/index/<name>.npy    the arrays below

    goods                  every goods id the version knows, sorted: a goods' position is
                           its number in every other array
    users                  every shopper's key, sorted (bytes)
    users_prefix           the first 8 bytes of each key as a number: what a lookup
                           searches (a binary search over numbers, then the whole key)
    recs_start             shopper i's precomputed list is rows recs_start[i]:recs_start[i+1]
    recs_goods, recs_score, recs_bought      of recs_*, best first
    history_start, history_goods             what shopper i bought (all of it)
    similar_start, similar_goods, similar_score
                           goods j's nearest goods, nearest first
    user_factors, item_factors, factored     ALS factors (a row of zeros, factored False,
                           for a shopper the last fit did not see)
    trending               each goods' popular score (0: not among the popular goods)

It is built once, when a version is published (`build`), from the version's Parquet result
sets, and again whenever erasure or a key rotation edits them (`rebuild`). A worker maps
the files read-only (`numpy.load(mmap_mode="r")`, a public API): the pages belong to the
kernel's page cache, shared by every worker process on the machine and by the version a
reload maps beside the one serving, so memory does not grow with workers, and a shopper
costs Python objects only while their request is answered.

A file that is missing, truncated, of another dtype or shape than meta.json says, or from
another version is refused (`IndexProblem`), naming the file.
"""
from __future__ import annotations

import bisect
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core.files import atomic_write

FORMAT = 1
FOLDER = "index"
FACTORS = ("user_factors", "item_factors")  # result sets of the model, beside RESULT_SETS
# the share of each signal in what is ranked at request time when the version names none
# (trained before metrics.json kept its blend): models/hybrid.py HybridParams' defaults,
# written out because the engine imports nothing of Spark
DEFAULT_WEIGHTS = {"als": 0.5, "items": 0.5, "trending": 0.25}


class IndexProblem(RuntimeError):
    """The index of a version cannot be used; the message names the file and what is wrong."""


def _read(folder: Path, name: str, columns: list[str], optional: list[str] = ()
          ) -> pa.Table | None:
    """`columns` (and those of `optional` it has) of the result set `name`; None when the
    version has no such set; IndexProblem when it lacks a column."""
    path = folder / name
    if not path.exists():
        return None
    present = pq.read_schema(next(path.glob("*.parquet"), path)).names
    missing = [c for c in columns if c not in present]
    if missing:
        raise IndexProblem(f"{path} lacks column(s) {', '.join(missing)}")
    return pq.read_table(path, columns=[*columns, *(c for c in optional if c in present)])


def _positions(values: pa.Array | pa.ChunkedArray, among: pa.Array) -> np.ndarray:
    """Each value's position in `among` (-1: absent), vectorised by Arrow's hash lookup."""
    if values.type != among.type:  # an empty column may come without a type
        values = values.cast(among.type)
    return pc.index_in(values, value_set=among).fill_null(-1).to_numpy().astype(np.int64)


def _ragged(owner: np.ndarray, n: int, *order_by: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row order, start offsets) grouping rows by `owner` (0..n-1), each group sorted by
    `order_by` (first key first)."""
    order = np.lexsort((*reversed(order_by), owner)) if order_by else np.argsort(
        owner, kind="stable")
    start = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(owner, minlength=n), out=start[1:])
    return order, start


def _prefixes(keys: np.ndarray) -> np.ndarray:
    """The first 8 bytes of each key (zero-padded), big-endian: sorted as the keys are."""
    width = keys.dtype.itemsize
    raw = np.zeros((len(keys), max(width, 8)), np.uint8)
    raw[:, :width] = np.frombuffer(keys.tobytes(), np.uint8).reshape(len(keys), width)
    return np.ascontiguousarray(raw[:, :8]).view(">u8").ravel().astype(np.uint64)


def _prefix(key: bytes) -> int:
    return int.from_bytes(key[:8].ljust(8, b"\0"), "big")


def build(folder: Path, weights: dict[str, float] | None = None) -> dict[str, np.ndarray]:
    """The index arrays of serving/<version> from its Parquet result sets."""
    recs = _read(folder, "user_recs", ["user_key", "goods_id", "score", "rank"],
                 optional=["bought"])  # "bought": models trained since it is kept
    if recs is None:
        raise IndexProblem(f"{folder} lacks user_recs/")
    history = _read(folder, "history", ["user_key", "goods"])
    similar = _read(folder, "similar", ["goods_id", "similar_id", "score", "rank"])
    popular = _read(folder, "popular", ["goods_id", "score"])
    catalog = _read(folder, "catalog", ["goods_id"])
    users_f = _read(folder, "user_factors", ["user_key", "features"])
    items_f = _read(folder, "item_factors", ["goods_id", "features"])
    if history is not None:
        history = history.filter(pc.is_valid(history["user_key"]))

    goods_parts = [recs["goods_id"], popular["goods_id"], catalog["goods_id"]]
    if history is not None:
        goods_parts.append(pc.list_flatten(history["goods"]))
    if similar is not None:
        goods_parts += [similar["goods_id"], similar["similar_id"]]
    if items_f is not None:
        goods_parts.append(items_f["goods_id"])
    goods = pc.drop_null(pc.unique(pa.chunked_array(
        [c.cast(pa.string()) for part in goods_parts for c in
         (part.chunks if isinstance(part, pa.ChunkedArray) else [part])], pa.string())))
    goods = pc.take(goods, pc.sort_indices(goods))
    user_parts = [recs["user_key"]] + [t["user_key"] for t in (history, users_f) if t is not None]
    users = pc.drop_null(pc.unique(pa.chunked_array(
        [c for part in user_parts for c in part.chunks], pa.string())))
    users = pc.take(users, pc.sort_indices(users))
    n_goods, n_users = len(goods), len(users)
    keys = users.to_pylist()
    arrays = {"goods": np.array(goods.to_pylist(), dtype=str) if n_goods else
              np.zeros(0, "U1"),
              "users": np.array(keys, dtype=f"S{max(map(len, keys), default=1) or 1}")}
    arrays["users_prefix"] = _prefixes(arrays["users"])

    owner = _positions(recs["user_key"], users)
    order, arrays["recs_start"] = _ragged(owner, n_users, recs["rank"].to_numpy())
    arrays["recs_goods"] = _positions(recs["goods_id"], goods)[order].astype(np.int32)
    arrays["recs_score"] = recs["score"].to_numpy().astype(np.float64)[order]
    arrays["recs_bought"] = (recs["bought"].fill_null(False).to_numpy(zero_copy_only=False)
                             if "bought" in recs.column_names
                             else np.zeros(recs.num_rows, bool))[order]

    if history is not None:
        flat = pc.list_flatten(history["goods"])
        parent = pc.list_parent_indices(history["goods"]).to_numpy()
        owner = _positions(history["user_key"], users)[parent]
        got = _positions(flat, goods)
        order, arrays["history_start"] = _ragged(owner, n_users, got)
        arrays["history_goods"] = got[order].astype(np.int32)

    if similar is not None:
        owner = _positions(similar["goods_id"], goods)
        order, arrays["similar_start"] = _ragged(owner, n_goods, similar["rank"].to_numpy())
        arrays["similar_goods"] = _positions(similar["similar_id"], goods)[order].astype(np.int32)
        arrays["similar_score"] = similar["score"].to_numpy().astype(np.float64)[order]

    if users_f is not None and items_f is not None and users_f.num_rows and items_f.num_rows:
        rank = len(items_f["features"][0])
        for name, table, rows, n in (
                ("user_factors", users_f, _positions(users_f["user_key"], users), n_users),
                ("item_factors", items_f, _positions(items_f["goods_id"], goods), n_goods)):
            matrix = np.zeros((n, rank), np.float32)
            matrix[rows] = pc.list_flatten(table["features"]).to_numpy().astype(
                np.float32).reshape(-1, rank)
            arrays[name] = matrix
        arrays["factored"] = arrays["user_factors"].any(axis=1)

    trending = np.zeros(n_goods, np.float32)
    trending[_positions(popular["goods_id"], goods)] = popular["score"].to_numpy()
    arrays["trending"] = trending
    arrays["_weights"] = weights or DEFAULT_WEIGHTS  # meta, not an array
    return arrays


def save(arrays: dict, folder: Path, version: str) -> None:
    """Write the arrays as index/ of `folder` (through a temporary folder: whole or absent)."""
    arrays = dict(arrays)
    weights = arrays.pop("_weights")
    tmp = folder / f".{FOLDER}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    meta = {"format": FORMAT, "version": version, "weights": weights, "arrays": {}}
    for name, array in arrays.items():
        np.save(tmp / f"{name}.npy", array, allow_pickle=False)
        meta["arrays"][name] = {"dtype": array.dtype.str, "shape": list(array.shape)}
    atomic_write(tmp / "meta.json", json.dumps(meta, indent=2))
    old = folder / FOLDER
    if old.exists():
        shutil.rmtree(old)
    os.replace(tmp, old)


def rebuild(folder: Path) -> None:
    """Build serving/<version>/index again from its Parquet (after erasure or a rotation
    edited them); nothing for a version published without one."""
    meta_path = folder / FOLDER / "meta.json"
    if not meta_path.exists():
        return
    meta = json.loads(meta_path.read_text())
    save(build(folder, meta.get("weights")), folder, meta["version"])


def load(folder: Path, version: str) -> ServingIndex:
    """Map index/ of serving/<version> read-only; IndexProblem names what is wrong."""
    where = folder / FOLDER
    try:
        meta = json.loads((where / "meta.json").read_text())
    except (OSError, ValueError) as exc:
        raise IndexProblem(f"{where / 'meta.json'} unreadable: {exc}") from exc
    if meta.get("format") != FORMAT:
        raise IndexProblem(f"{where / 'meta.json'}: index format {meta.get('format')!r}, "
                           f"this code serves format {FORMAT}; publish the version again")
    if meta.get("version") != version:
        raise IndexProblem(f"{where / 'meta.json'} belongs to version {meta.get('version')!r},"
                           f" not {version!r}")
    arrays = {}
    for name, spec in meta["arrays"].items():
        path = where / f"{name}.npy"
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:  # missing, truncated, not an .npy
            raise IndexProblem(f"{path}: {exc}") from exc
        if array.dtype.str != spec["dtype"] or list(array.shape) != spec["shape"]:
            raise IndexProblem(f"{path}: {array.dtype.str} {list(array.shape)}, meta.json "
                               f"says {spec['dtype']} {spec['shape']}")
        arrays[name] = array
    for name in ("goods", "users", "users_prefix", "recs_start", "recs_goods", "recs_score",
                 "recs_bought", "trending"):
        if name not in arrays:
            raise IndexProblem(f"{where}: no {name}.npy")
    return ServingIndex(arrays, meta.get("weights") or DEFAULT_WEIGHTS)


class ServingIndex:
    """Lookups over the mapped arrays; goods ids leave as text."""

    def __init__(self, arrays: dict[str, np.ndarray], weights: dict[str, float]):
        self.mapped = arrays  # as loaded: numpy.memmap of the files
        # plain ndarray views of the same pages: slicing them costs a third of a memmap's
        self.arrays = a = {name: np.asarray(array) for name, array in arrays.items()}
        self.weights = {**DEFAULT_WEIGHTS, **weights}
        self.goods: list[str] = a["goods"].tolist()  # goods, not shoppers: small
        self.goods_position = {g: i for i, g in enumerate(self.goods)}
        self.users, self.prefix = a["users"], memoryview(a["users_prefix"])
        self.has_history = "history_start" in a
        self.has_factors = "user_factors" in a
        self.trending = _scaled(np.asarray(a["trending"], np.float32))

    @property
    def n_users(self) -> int:
        return len(self.users)

    def user(self, key: str) -> int | None:
        """The shopper's position, or None."""
        try:
            wanted = key.encode("ascii")
        except UnicodeEncodeError:
            return None
        # bisect over a memoryview, not numpy's searchsorted: that one releases the GIL,
        # and taking it back behind the event writer's thread cost 20 us a lookup
        prefix, users, start = self.prefix, self.users, _prefix(wanted)
        i = bisect.bisect_left(prefix, start)
        while i < len(users) and prefix[i] == start:  # keys sharing their first 8 bytes
            if users[i] == wanted:
                return i
            i += 1
        return None

    def recs(self, user: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(goods positions, scores, bought?) of the shopper's precomputed list, best first."""
        a = self.arrays
        lo, hi = a["recs_start"][user:user + 2].tolist()
        return a["recs_goods"][lo:hi], a["recs_score"][lo:hi], a["recs_bought"][lo:hi]

    def bought(self, user: int) -> np.ndarray:
        """Positions of the goods the shopper bought."""
        a = self.arrays
        return a["history_goods"][int(a["history_start"][user]):int(a["history_start"][user + 1])]

    def similar(self, goods_id: str) -> list[tuple[str, float]] | None:
        i = self.goods_position.get(goods_id)
        a = self.arrays
        if i is None or "similar_start" not in a:
            return None
        lo, hi = int(a["similar_start"][i]), int(a["similar_start"][i + 1])
        if lo == hi:
            return None
        goods = self.goods
        return [(goods[g], s) for g, s in zip(a["similar_goods"][lo:hi].tolist(),
                                              a["similar_score"][lo:hi].tolist())]

    def scores(self, user: int) -> np.ndarray | None:
        """Every goods' score for the shopper at `user` (`blend`): their ALS factors against
        every goods', and the neighbours of what they bought."""
        a = self.arrays
        als = a["item_factors"] @ a["user_factors"][user] \
            if self.has_factors and a["factored"][user] else None
        near = None
        if self.has_history and "similar_start" in a:
            bought = self.bought(user)
            lo, hi = a["similar_start"][bought], a["similar_start"][bought + 1]
            sizes = hi - lo
            rows = np.repeat(lo - np.cumsum(sizes) + sizes, sizes) + np.arange(sizes.sum())
            near = np.bincount(a["similar_goods"][rows], weights=a["similar_score"][rows],
                               minlength=len(self.goods))
        return blend(self.weights, self.trending, als, near)


def blend(weights: dict[str, float], trending: np.ndarray, als: np.ndarray | None = None,
          near: np.ndarray | None = None) -> np.ndarray | None:
    """Every goods' score for one shopper, as the night blends goods new to them
    (models/hybrid.py without the repeat term): ALS predictions, summed similarity to the
    goods they bought, and trending goods, each (negatives as 0) scaled to its best, then
    weighted. None when neither ALS nor their history says anything: then popularity alone
    would rank, and that is the popular fill's job."""
    # the popular goods stand for either popularity component (models/hybrid.py)
    total = (weights.get("trending", 0.0) + weights.get("recent", 0.0)) * trending
    personal = False
    for weight, part in ((weights["als"], als), (weights["items"], near)):
        peak = 0.0 if part is None or not weight or not len(part) else float(part.max())
        if peak > 0:
            total = total + weight * np.maximum(part, 0) / peak
            personal = True
    return total if personal else None


def trending_scores(goods_position: dict[str, int], popular) -> np.ndarray:
    """The popular goods' scores by goods position, scaled to the best (1)."""
    trending = np.zeros(len(goods_position), np.float32)
    for goods_id, score in popular:
        if goods_id in goods_position:
            trending[goods_position[goods_id]] = score
    return _scaled(trending)


def _scaled(values: np.ndarray) -> np.ndarray:
    """`values` divided by the largest (as they are when none is positive)."""
    peak = float(values.max()) if len(values) else 0.0
    return values / peak if peak > 0 else values
