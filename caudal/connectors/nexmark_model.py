"""The Nexmark auction model, vectorized: arrays of event numbers in, Arrow columns out.

It follows the generator of the Nexmark benchmark (as in Beam and Flink): out of every 50 events
1 is a new person, 3 are new auctions and 46 are bids. Ids are derived from event numbers, so an
auction's seller and a bid's auction and bidder are people and auctions that exist already (or
are about to: a small "lead"); most bids go to a few hot auctions from hot bidders; prices are
log-uniform from $1 to $1M. Randomness is a hash of (seed, event number, field) instead of a
sequential RNG, so any event can be generated on its own: the stream is identical for every
batch size, parallelism and restart. Text comes from pools built once per seed and is copied
with Arrow ``take``; no Python string is built per row.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pyarrow as pa

from caudal import compute as pc
from caudal.mixing import GOLDEN, mix64
from caudal.types import TIMESTAMP

# -- the model's constants (those of the standard generator) --------------------------------
PROPORTION = {"person": 1, "auction": 3, "bid": 46}
TOTAL_PROPORTION = 50
FIRST_PERSON_ID = 1000
FIRST_AUCTION_ID = 1000
FIRST_CATEGORY_ID = 10
NUM_CATEGORIES = 5
NUM_ACTIVE_PEOPLE = 1000
NUM_IN_FLIGHT_AUCTIONS = 100
PERSON_ID_LEAD = 10
AUCTION_ID_LEAD = 10
#: 1 - 1/ratio of bids go to hot auctions / come from hot bidders; auctions from hot sellers
HOT_AUCTION_RATIO = 2
HOT_BIDDERS_RATIO = 4
HOT_SELLERS_RATIO = 4
#: hot ids are the first (auctions, sellers) or second (bidders) of each batch of 100
HOT_BATCH = 100
HOT_CHANNELS = ("Google", "Facebook", "Baidu", "Apple")
HOT_CHANNELS_RATIO = 2
CHANNELS_NUMBER = 10_000
AVG_SIZE = {"person": 200, "auction": 500, "bid": 100}
#: events until NUM_IN_FLIGHT_AUCTIONS more auctions exist: the mean auction length
AUCTION_HORIZON_EVENTS = NUM_IN_FLIGHT_AUCTIONS * TOTAL_PROPORTION // PROPORTION["auction"]

KINDS = ("person", "auction", "bid")
EVENT_TYPE = {"person": 0, "auction": 1, "bid": 2}

BID_SCHEMA = pa.schema([
    ("auction", pa.int64()), ("bidder", pa.int64()), ("price", pa.int64()),
    ("channel", pa.string()), ("url", pa.string()), ("date_time", TIMESTAMP),
    ("extra", pa.string()),
])
AUCTION_SCHEMA = pa.schema([
    ("id", pa.int64()), ("item_name", pa.string()), ("description", pa.string()),
    ("initial_bid", pa.int64()), ("reserve", pa.int64()), ("date_time", TIMESTAMP),
    ("expires", TIMESTAMP), ("seller", pa.int64()), ("category", pa.int64()),
    ("extra", pa.string()),
])
PERSON_SCHEMA = pa.schema([
    ("id", pa.int64()), ("name", pa.string()), ("email_address", pa.string()),
    ("credit_card", pa.string()), ("city", pa.string()), ("state", pa.string()),
    ("date_time", TIMESTAMP), ("extra", pa.string()),
])
KIND_SCHEMA = {"person": PERSON_SCHEMA, "auction": AUCTION_SCHEMA, "bid": BID_SCHEMA}
#: all events in one table, Arroyo style: one struct per kind, exactly one non-null per row;
#: date_time is every event's time, top level, so it can carry the watermark
EVENTS_SCHEMA = pa.schema([
    ("event_type", pa.int64()),
    ("person", pa.struct(list(PERSON_SCHEMA))),
    ("auction", pa.struct(list(AUCTION_SCHEMA))),
    ("bid", pa.struct(list(BID_SCHEMA))),
    ("date_time", TIMESTAMP),
])


def table_schema(kind: str | None) -> pa.Schema:
    """The full schema of a flat table of one kind, or of the all-events table (None)."""
    return EVENTS_SCHEMA if kind is None else KIND_SCHEMA[kind]


# -- counter-based randomness ---------------------------------------------------------------
_MASK64 = (1 << 64) - 1


def _mix_int(x: int) -> int:
    """splitmix64 of a Python int (for per-stream keys)."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


class Random:
    """64 random bits per event and stream: splitmix64 of (key(seed, stream) + e * golden)."""

    def __init__(self, seed: int, events: np.ndarray):
        self.seed = seed
        self._weyl = events.astype(np.uint64) * GOLDEN

    def word(self, stream: int) -> np.ndarray:
        key = np.uint64(_mix_int((self.seed * 0x2545F4914F6CDD1D + stream) & _MASK64))
        return mix64(self._weyl + key)


def below(word: np.ndarray, bound, shift: int = 0) -> np.ndarray:
    """Uniform ints in [0, bound) from 32 bits of ``word`` starting at ``shift`` (bound < 2**32,
    a scalar or an int64 array); multiply-shift, no division."""
    bits = (word >> np.uint64(shift)) & np.uint64(0xFFFFFFFF) if shift else \
        word & np.uint64(0xFFFFFFFF)
    if isinstance(bound, np.ndarray):
        bits *= bound.view(np.uint64)
    else:
        bits *= np.uint64(bound)
    bits >>= np.uint64(32)
    return bits.view(np.int64)


def _unit(word: np.ndarray) -> np.ndarray:
    """Uniform floats in [0, 1) from the top 53 bits (exact IEEE arithmetic: deterministic)."""
    return (word >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


#: price(u) = round(100 * 10 ** (6u)) cents at 4097 knots; in between linear in integers, so
#: prices are identical on every machine (no libm call per row)
_PRICE_KNOTS = np.array([round(100 * 10 ** (6 * k / 4096)) for k in range(4097)], np.int64)


def price(word: np.ndarray) -> np.ndarray:
    """Log-uniform prices in cents, 100 .. 1e8, like the model's round(10^(6u) * 100)."""
    knot = (word >> np.uint64(52)).view(np.int64)
    frac = ((word >> np.uint64(32)) & np.uint64(0xFFFFF)).view(np.int64)
    low = _PRICE_KNOTS[knot]
    step = _PRICE_KNOTS[knot + 1] - low
    step *= frac
    step >>= 20
    return low + step


# -- text pools -----------------------------------------------------------------------------
POOL_SIZE = 1 << 14
_STRING_STREAM = {"item_name": 101, "description": 102, "email_user": 103, "email_host": 104,
                  "url": 105, "extra": 106, "channel_url": 107}


def _string_array(lengths: np.ndarray, chars: np.ndarray) -> pa.Array:
    offsets = np.zeros(len(lengths) + 1, np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.Array.from_buffers(pa.string(), len(lengths),
                                 [None, pa.py_buffer(offsets), pa.py_buffer(chars)])


def random_text(seed: int, stream: int, lengths: np.ndarray, special: str | None) -> pa.Array:
    """Strings of the given lengths of random a-z; 1 char in 13 is ``special`` if given."""
    total = int(lengths.sum())
    words = Random(seed, np.arange(total, dtype=np.int64)).word(stream)
    chars = (below(words, 26) + ord("a")).astype(np.uint8)
    if special is not None:
        chars[below(words, 13, shift=32) == 0] = ord(special)
    return _string_array(lengths, chars)


def _next_strings(seed: int, name: str, count: int, max_length: int,
                  special: str = " ") -> pa.Array:
    """The model's nextString: 3 .. max_length-1 chars, spaces trimmed (so maybe shorter)."""
    words = Random(seed, np.arange(count, dtype=np.int64)).word(_STRING_STREAM[name])
    lengths = 3 + below(words, max_length - 3)
    text = random_text(seed, _STRING_STREAM[name] + 1000, lengths, special)
    return pc.utf8_trim(text, " ") if special == " " else text


@dataclass(frozen=True)
class Pool:
    """Distinct strings and their lengths; a column is ``strings.take(indices)``."""

    strings: pa.Array
    lengths: np.ndarray

    @classmethod
    def of(cls, strings: pa.Array) -> Pool:
        strings = strings.cast(pa.string())
        return cls(strings, pc.utf8_length(strings).to_numpy(zero_copy_only=False))


@functools.lru_cache(maxsize=64)
def pool(seed: int, name: str) -> Pool:
    """The text pool ``name`` for ``seed``, built once per process (vectorized)."""
    if name == "item_name":
        return Pool.of(_next_strings(seed, name, POOL_SIZE, 20))
    if name == "description":
        return Pool.of(_next_strings(seed, name, POOL_SIZE, 100))
    if name == "email_address":
        user = _next_strings(seed, "email_user", POOL_SIZE, 7)
        host = _next_strings(seed, "email_host", POOL_SIZE, 5)
        return Pool.of(pc.binary_join_element_wise(user, "@", host, ".com", ""))
    if name == "name":
        first = ["Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah",
                 "Deiter", "Walter"]
        last = ["Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones",
                "Noris"]
        return Pool.of(pa.array([f"{f} {la}" for f in first for la in last]))
    if name == "city":
        return Pool.of(pa.array(["Phoenix", "Los Angeles", "San Francisco", "Boise", "Portland",
                                 "Bend", "Redmond", "Seattle", "Kent", "Cheyenne"]))
    if name == "state":
        return Pool.of(pa.array(["AZ", "CA", "ID", "OR", "WA", "WY"]))
    if name == "channel":
        numbers = pa.array(np.arange(CHANNELS_NUMBER)).cast(pa.string())
        cold = pc.binary_join_element_wise("channel-", numbers, "")
        return Pool.of(pa.concat_arrays([pa.array(HOT_CHANNELS), cold]))
    if name == "url":
        return Pool.of(_urls(seed))
    raise KeyError(name)


def _urls(seed: int) -> pa.Array:
    """One url per channel of the channel pool: a random base url; 9 in 10 cold channels
    also carry ``&channel_id=`` with the channel number's bits reversed, as in the model."""
    count = len(HOT_CHANNELS) + CHANNELS_NUMBER
    # three path segments per url, from one pool of 3 * count segments
    segments = _next_strings(seed, "url", 3 * count, 5, "_")
    parts = [segments.slice(i * count, count) for i in range(3)]
    base = pc.binary_join_element_wise("https://www.nexmark.com/", parts[0], "/", parts[1], "/",
                                       parts[2], "/item.htm?query=1", "")
    number = np.arange(CHANNELS_NUMBER, dtype=np.uint32)
    rev = number.copy()
    for shift, mask in ((1, 0x55555555), (2, 0x33333333), (4, 0x0F0F0F0F), (8, 0x00FF00FF)):
        rev = ((rev >> shift) & mask) | ((rev & mask) << shift)
    rev = (rev >> 16) | (rev << 16)
    channel_id = np.abs(rev.view(np.int32).astype(np.int64))
    words = Random(seed, np.arange(count, dtype=np.int64)).word(_STRING_STREAM["channel_url"])
    with_id = np.concatenate([np.zeros(len(HOT_CHANNELS), bool),
                              below(words[len(HOT_CHANNELS):], 10) > 0])
    suffix = pc.binary_join_element_wise(
        "&channel_id=", pa.array(channel_id).cast(pa.string()), "")
    suffix = pa.concat_arrays([pa.array([""] * len(HOT_CHANNELS)), suffix])
    suffix = pc.if_else(pa.array(with_id), suffix, "")
    return pc.binary_join_element_wise(base, suffix, "")


#: padding by kind: lengths [low, high) covering what the model asks for (clipped to it), and
#: distinct strings per length (a pool of ~2 MB each)
_EXTRA_RANGE = {"bid": (54, 82, 1024), "person": (60, 200, 128), "auction": (200, 560, 32)}


@functools.lru_cache(maxsize=16)
def extra_pool(seed: int, kind: str) -> pa.Array:
    """Padding text of every length of the kind's range, ``variants`` strings per length:
    string ``(length - low) * variants + v`` has ``length`` chars."""
    low, high, variants = _EXTRA_RANGE[kind]
    lengths = np.repeat(np.arange(low, high, dtype=np.int64), variants)
    return random_text(seed, _STRING_STREAM["extra"] + EVENT_TYPE[kind], lengths, None)


def extra_indices(word: np.ndarray, kind: str, current_size) -> np.ndarray:
    """The model's nextExtra: pad each event to its kind's average size, +-20%."""
    low, high, variants = _EXTRA_RANGE[kind]
    desired = np.maximum(AVG_SIZE[kind] - np.asarray(current_size, np.int64), 0)
    delta = (2 * desired + 5) // 10            # Java's Math.round(desired * 0.2)
    size = desired - delta + below(word, np.maximum(2 * delta, 1)) * (delta > 0)
    np.clip(size, low, high - 1, out=size)
    return (size - low) * variants + below(word, variants, shift=32)


# -- event time -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Clock:
    """Event time of event ``e``: base + floor(e / rate) in µs, exact integer arithmetic."""

    base_us: int
    event_rate: float

    @functools.cached_property
    def _step(self) -> tuple[int, int]:
        step = Fraction(1_000_000) / Fraction(self.event_rate).limit_denominator(1000)
        return step.numerator, step.denominator

    def relative_us(self, e: np.ndarray) -> np.ndarray:
        p, q = self._step
        if q == 1:
            return e * p
        whole, rest = np.divmod(e, q)
        return whole * p + rest * p // q

    def times(self, e: np.ndarray) -> np.ndarray:
        out = self.relative_us(e)
        out += self.base_us
        return out

    def first_not_before(self, relative_us: int) -> int:
        """The lowest event number whose relative time is >= ``relative_us``."""
        p, q = self._step
        return -((-relative_us * q) // p)


# -- columns --------------------------------------------------------------------------------
def int64_array(values: np.ndarray) -> pa.Array:
    """A BIGINT column over a NumPy int64 array, zero-copy."""
    values = np.ascontiguousarray(values, np.int64)
    return pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(values)])


def timestamp_array(micros: np.ndarray) -> pa.Array:
    """A TIMESTAMP column over µs since the epoch, zero-copy."""
    micros = np.ascontiguousarray(micros, np.int64)
    return pa.Array.from_buffers(TIMESTAMP, len(micros), [None, pa.py_buffer(micros)])


def pooled(strings: pa.Array, indices: np.ndarray) -> pa.Array:
    """A TEXT column of pool strings (one memcpy per value, in Arrow)."""
    return strings.take(pa.array(indices.astype(np.int32, copy=False)))


def _next_person(last: np.ndarray, word: np.ndarray) -> np.ndarray:
    """A random person id among the active ones, plus a few not created yet (base 0)."""
    count = last + 1
    active = np.minimum(count, NUM_ACTIVE_PEOPLE)
    return count - active + below(word, active + PERSON_ID_LEAD)


def _hot(word: np.ndarray, ratio: int) -> np.ndarray:
    return below(word, ratio, shift=32) > 0


class Model:
    """Field values of events, given their event numbers (int64 arrays)."""

    def __init__(self, seed: int, clock: Clock):
        self.seed = seed
        self.clock = clock

    def columns(self, kind: str, e: np.ndarray, want) -> dict:
        """Arrow arrays of the ``want`` fields of events ``e`` (all of kind ``kind``)."""
        out = getattr(self, f"_{kind}")(e, set(want), Random(self.seed, e))
        return {name: value if isinstance(value, pa.Array) else int64_array(value)
                for name, value in out.items()}

    def _bid(self, e, want, rnd) -> dict:
        out: dict = {}
        epoch = e // TOTAL_PROPORTION
        if "auction" in want:
            word = rnd.word(1)
            last = epoch * 3 + 2
            low = np.maximum(last - NUM_IN_FLIGHT_AUCTIONS, 0)
            cold = low + below(word, last - low + 1 + AUCTION_ID_LEAD)
            hot = last // HOT_BATCH * HOT_BATCH
            out["auction"] = np.where(_hot(word, HOT_AUCTION_RATIO), hot, cold) + FIRST_AUCTION_ID
        if "bidder" in want:
            word = rnd.word(2)
            hot = epoch // HOT_BATCH * HOT_BATCH + 1
            cold = _next_person(epoch, word)
            out["bidder"] = np.where(_hot(word, HOT_BIDDERS_RATIO), hot, cold) + FIRST_PERSON_ID
        if "price" in want:
            out["price"] = price(rnd.word(3))
        if "channel" in want or "url" in want:
            word = rnd.word(4)
            index = np.where(_hot(word, HOT_CHANNELS_RATIO), below(word, len(HOT_CHANNELS)),
                             len(HOT_CHANNELS) + below(word, CHANNELS_NUMBER))
            if "channel" in want:
                out["channel"] = pooled(pool(self.seed, "channel").strings, index)
            if "url" in want:
                out["url"] = pooled(pool(self.seed, "url").strings, index)
        if "date_time" in want:
            out["date_time"] = timestamp_array(self.clock.times(e))
        if "extra" in want:
            out["extra"] = pooled(extra_pool(self.seed, "bid"),
                                  extra_indices(rnd.word(5), "bid", 32))
        return out

    def _auction(self, e, want, rnd) -> dict:
        out: dict = {}
        epoch = e // TOTAL_PROPORTION
        if "id" in want:
            out["id"] = epoch * 3 + (e - epoch * TOTAL_PROPORTION) - 1 + FIRST_AUCTION_ID
        if "seller" in want:
            word = rnd.word(11)
            hot = epoch // HOT_BATCH * HOT_BATCH
            cold = _next_person(epoch, word)
            out["seller"] = np.where(_hot(word, HOT_SELLERS_RATIO), hot, cold) + FIRST_PERSON_ID
        if "category" in want:
            out["category"] = below(rnd.word(12), NUM_CATEGORIES) + FIRST_CATEGORY_ID
        if "initial_bid" in want or "reserve" in want:
            initial = price(rnd.word(13))
            if "initial_bid" in want:
                out["initial_bid"] = initial
            if "reserve" in want:
                out["reserve"] = initial + price(rnd.word(14))
        if "date_time" in want or "expires" in want:
            times = self.clock.times(e)
            if "date_time" in want:
                out["date_time"] = timestamp_array(times)
            if "expires" in want:
                # lasts 1 ms + up to twice the time until 100 more auctions exist
                horizon = self.clock.times(e + AUCTION_HORIZON_EVENTS) - times
                span = np.maximum(2 * horizon, 1).astype(np.float64)
                length = np.floor(_unit(rnd.word(15)) * span).astype(np.int64)
                out["expires"] = timestamp_array(times + 1000 + length)
        names = descriptions = None
        if "item_name" in want or "extra" in want:
            names = below(rnd.word(16), POOL_SIZE)
            if "item_name" in want:
                out["item_name"] = pooled(pool(self.seed, "item_name").strings, names)
        if "description" in want or "extra" in want:
            descriptions = below(rnd.word(17), POOL_SIZE)
            if "description" in want:
                out["description"] = pooled(pool(self.seed, "description").strings,
                                            descriptions)
        if "extra" in want:
            size = (8 + 5 * 8 + pool(self.seed, "item_name").lengths[names]
                    + pool(self.seed, "description").lengths[descriptions])
            out["extra"] = pooled(extra_pool(self.seed, "auction"),
                                  extra_indices(rnd.word(18), "auction", size))
        return out

    def _person(self, e, want, rnd) -> dict:
        out: dict = {}
        if "id" in want:
            out["id"] = e // TOTAL_PROPORTION + FIRST_PERSON_ID
        if "date_time" in want:
            out["date_time"] = timestamp_array(self.clock.times(e))
        extra = "extra" in want
        size = 8 + 19
        index = {}
        for stream, name, count in ((21, "name", 99), (22, "email_address", POOL_SIZE),
                                    (23, "city", 10), (24, "state", 6)):
            if name in want or extra:
                index[name] = below(rnd.word(stream), count)
                text = pool(self.seed, name)
                if name in want:
                    out[name] = pooled(text.strings, index[name])
                if extra:
                    size = size + text.lengths[index[name]]
        if "credit_card" in want:
            out["credit_card"] = credit_cards(rnd.word(25))
        if extra:
            out["extra"] = pooled(extra_pool(self.seed, "person"),
                                  extra_indices(rnd.word(26), "person", size))
        return out


#: where the 16 digits go in "dddd dddd dddd dddd"
_CARD_DIGITS = np.array([i + i // 4 for i in range(16)])


def credit_cards(word: np.ndarray) -> pa.Array:
    """Four groups of four random digits, built as one fixed-width byte matrix."""
    n = len(word)
    groups = np.empty((n, 4), np.int64)
    for g in range(4):
        groups[:, g] = ((word >> np.uint64(16 * g)) & np.uint64(0xFFFF)).view(np.int64) \
            * 10000 >> 16
    digits = groups[:, :, None] // np.array([1000, 100, 10, 1]) % 10
    text = np.full((n, 19), ord(" "), np.uint8)
    text[:, _CARD_DIGITS] = digits.reshape(n, 16) + ord("0")
    return _string_array(np.full(n, 19, np.int64), text.ravel())


def expand(compact: pa.Array, present: np.ndarray, bitmap: pa.Buffer) -> pa.Array:
    """Spread the values of ``compact`` over the rows where ``present`` is True, null
    elsewhere (``bitmap`` is ``present`` packed), without copying string bytes: absent rows
    become empty slots in the offsets."""
    n, k = len(present), len(compact)
    if pa.types.is_string(compact.type):
        offsets = np.frombuffer(compact.buffers()[1], np.int32, count=compact.offset + k + 1)[
            compact.offset:]
        full = np.empty(n + 1, np.int32)
        full[0] = offsets[0]
        lengths = np.zeros(n, np.int32)
        lengths[present] = np.diff(offsets)
        np.cumsum(lengths, out=full[1:])
        full[1:] += offsets[0]
        data = compact.buffers()[2] or pa.py_buffer(b"")
        return pa.Array.from_buffers(pa.string(), n, [bitmap, pa.py_buffer(full), data],
                                     null_count=n - k)
    width = compact.type.bit_width // 8
    values = np.frombuffer(compact.buffers()[1], np.dtype(f"<i{width}"),
                           count=compact.offset + k)[compact.offset:]
    full = np.zeros(n, values.dtype)
    full[present] = values
    return pa.Array.from_buffers(compact.type, n, [bitmap, pa.py_buffer(full)],
                                 null_count=n - k)


# -- which events a partition holds ---------------------------------------------------------
def kind_count(kind: str | None, e: int) -> int:
    """How many events of ``kind`` (None: any) have a number below ``e``."""
    epoch, offset = divmod(e, TOTAL_PROPORTION)
    if kind is None:
        return e
    if kind == "person":
        return epoch + min(offset, 1)
    if kind == "auction":
        return 3 * epoch + min(max(offset - 1, 0), 3)
    return 46 * epoch + max(offset - 4, 0)


def kind_events(kind: str | None, ordinal: np.ndarray) -> np.ndarray:
    """The event numbers of the ``ordinal``-th events of ``kind`` (vectorized inverse of
    ``kind_count``)."""
    if kind is None:
        return ordinal
    share = PROPORTION[kind]
    first = {"person": 0, "auction": 1, "bid": 4}[kind]
    if share == 1:
        return ordinal * TOTAL_PROPORTION
    epoch = ordinal // share
    return ordinal + epoch * (TOTAL_PROPORTION - share) + first


def block_events(event_rate: float) -> int:
    """Events per partition block: about 0.1 s of event time, a multiple of 50, 50 .. 5000,
    so partitions advance through event time together."""
    per_tenth = max(1, min(100, int(event_rate // 500)))
    return TOTAL_PROPORTION * per_tenth


@dataclass(frozen=True)
class Layout:
    """The events of one kind held by partition ``index`` of ``count``: blocks k of
    ``block`` events with k % count == index, in order. Positions are local indices."""

    kind: str | None
    block: int
    index: int
    count: int

    @property
    def per_block(self) -> int:
        share = TOTAL_PROPORTION if self.kind is None else PROPORTION[self.kind]
        return self.block // TOTAL_PROPORTION * share

    def events(self, start: int, n: int) -> np.ndarray:
        """Event numbers of local positions start .. start+n-1."""
        local = np.arange(start, start + n, dtype=np.int64)
        if self.count > 1:
            per = self.per_block
            blocks = local // per
            local += blocks * (per * (self.count - 1)) + self.index * per
        return kind_events(self.kind, local)

    def event_at(self, position: int) -> int:
        return int(self.events(position, 1)[0])

    def position_of(self, e: int) -> int:
        """Local position of the first event of this partition numbered >= e."""
        block = e // self.block
        owned_before = max(0, -(-(block - self.index) // self.count))
        position = owned_before * self.per_block
        if block % self.count == self.index:
            position += kind_count(self.kind, e) - block * self.per_block
        return position

    def block_end(self, position: int) -> int:
        """The position where the block holding ``position`` ends."""
        return (position // self.per_block + 1) * self.per_block
