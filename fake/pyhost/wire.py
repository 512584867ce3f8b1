"""The tagged binary format ``call()`` speaks with a host's Python, both ways.

A host is not trusted with code on the controller, so what it sends is
decoded by this module alone: no ``pickle``, ``marshal`` or ``eval``, only
the types below, and limits on size and depth checked before anything is
allocated. The same source runs on the host (sent inside the bootstrap), so
it keeps to the standard library and to Python 3.6.

A frame is ``MAGIC``, a 4-byte big-endian length, then one value. A value
is a one-byte tag and its body; lengths and counts are 4-byte big-endian.
"""

import datetime
import struct

__all__ = ["WireError", "encode", "decode", "pair", "frame", "frame_length", "MAGIC", "HEADER", "MAX_FRAME",
           "TYPES"]

MAGIC = b"\xfaK"
HEADER = len(MAGIC) + 4
MAX_FRAME = 64 << 20  # a value bigger than this is refused, both ways
MAX_DEPTH = 100
TYPES = "None, bool, int, float, str, bytes, list, tuple, dict, set, frozenset, datetime, date, timedelta"

_LEN = struct.Struct(">I")
_FLOAT = struct.Struct(">d")
_DATETIME = struct.Struct(">HBBBBBIB")  # year .. microsecond, fold
_DATE = struct.Struct(">HBB")
_DELTA = struct.Struct(">iII")
_OFFSET = struct.Struct(">q")  # utcoffset in microseconds
_SEQUENCES = {list: b"l", tuple: b"t", set: b"S", frozenset: b"R"}
_MAKERS = {b"l": list, b"t": tuple, b"S": set, b"R": frozenset}


class WireError(ValueError):
    """A value that cannot be sent, or bytes that are not a value."""

    def __init__(self, message, where=""):
        self.message, self.where = message, where  # where: the item at fault, as ``[0]['key']``
        super().__init__("{}: {}".format("value" + where, message) if where else message)


def _type_name(value):
    kind = type(value)
    module = getattr(kind, "__module__", "builtins")
    return kind.__qualname__ if module == "builtins" else "{}.{}".format(module, kind.__qualname__)


def encode(value):
    """``value`` as bytes; WireError naming the type and where it sits for anything else."""
    out = bytearray()
    _encode(value, out, 0)
    if len(out) > MAX_FRAME:
        raise WireError("the value is {} bytes encoded, more than the limit of {}".format(len(out), MAX_FRAME))
    return bytes(out)


def _encode(value, out, depth):
    kind = type(value)  # exact types: a subclass may carry behaviour the other side cannot rebuild
    if value is None:
        out += b"N"
    elif kind is bool:
        out += b"T" if value else b"F"
    elif kind is int:
        body = value.to_bytes((value.bit_length() + 8) // 8, "big", signed=True)
        out += b"i" + _LEN.pack(len(body)) + body
    elif kind is float:
        out += b"f" + _FLOAT.pack(value)
    elif kind is str:
        body = value.encode("utf-8", "surrogatepass")
        out += b"s" + _LEN.pack(len(body)) + body
    elif kind is bytes:
        out += b"b" + _LEN.pack(len(value)) + value
    elif kind in _SEQUENCES or kind is dict:
        if depth >= MAX_DEPTH:
            raise WireError("the value is nested deeper than {} levels".format(MAX_DEPTH))
        out += (_SEQUENCES.get(kind) or b"d") + _LEN.pack(len(value))
        items = value.items() if kind is dict else enumerate(value)
        for key, item in items:
            try:
                if kind is dict:
                    _encode(key, out, depth + 1)
                _encode(item, out, depth + 1)
            except WireError as e:
                step = "[{!r}]".format(key) if kind in (dict, list, tuple) else "{element}"
                raise WireError(e.message, step + e.where) from None
    elif kind is datetime.datetime:
        out += b"D" + _DATETIME.pack(value.year, value.month, value.day, value.hour, value.minute,
                                     value.second, value.microsecond, value.fold)
        offset = value.utcoffset()
        if offset is None:
            out += b"N"
        else:
            out += b"z" + _OFFSET.pack(offset // datetime.timedelta(microseconds=1))
    elif kind is datetime.date:
        out += b"a" + _DATE.pack(value.year, value.month, value.day)
    elif kind is datetime.timedelta:
        out += b"e" + _DELTA.pack(value.days, value.seconds, value.microseconds)
    else:
        raise WireError("cannot send a value of type {} (only {})".format(_type_name(value), TYPES))


def pair(first, encoded):
    """The encoding of ``(first, value)`` given ``value`` already encoded (errors then name the value alone)."""
    return b"t" + _LEN.pack(2) + encode(first) + encoded


def frame(body):
    """One frame holding ``body`` (the bytes of one encoded value)."""
    return MAGIC + _LEN.pack(len(body)) + body


def frame_length(header):
    """The body length a frame header announces; WireError if it is not a header or is too big."""
    if len(header) != HEADER or header[:len(MAGIC)] != MAGIC:
        raise WireError("not a frame of Fake's protocol: {!r}".format(bytes(header[:40])))
    length = _LEN.unpack(header[len(MAGIC):])[0]
    if length > MAX_FRAME:
        raise WireError("a frame of {} bytes was announced, more than the limit of {}".format(length, MAX_FRAME))
    return length


def decode(data):
    """The value in ``data`` (exactly one); WireError for anything malformed."""
    reader = _Reader(bytes(data))
    value = reader.value(0)
    if reader.pos != len(reader.data):
        raise WireError("{} bytes left over after the value".format(len(reader.data) - reader.pos))
    return value


class _Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, n):
        end = self.pos + n
        if end > len(self.data):
            raise WireError("the value ends early (wanted {} bytes at offset {})".format(n, self.pos))
        chunk = self.data[self.pos:end]
        self.pos = end
        return chunk

    def length(self):
        return _LEN.unpack(self.take(4))[0]

    def value(self, depth):
        tag = self.take(1)
        if tag == b"N":
            return None
        if tag in (b"T", b"F"):
            return tag == b"T"
        if tag == b"i":
            return int.from_bytes(self.take(self.length()), "big", signed=True)
        if tag == b"f":
            return _FLOAT.unpack(self.take(8))[0]
        if tag == b"s":
            try:
                return self.take(self.length()).decode("utf-8", "surrogatepass")
            except UnicodeDecodeError as e:
                raise WireError("a string is not UTF-8: {}".format(e)) from None
        if tag == b"b":
            return self.take(self.length())
        if tag in _MAKERS or tag == b"d":
            return self.container(tag, depth)
        if tag == b"D":
            return self.datetime()
        if tag == b"a":
            try:
                return datetime.date(*_DATE.unpack(self.take(_DATE.size)))
            except ValueError as e:
                raise WireError("a bad date: {}".format(e)) from None
        if tag == b"e":
            days, seconds, micro = _DELTA.unpack(self.take(_DELTA.size))
            try:
                return datetime.timedelta(days=days, seconds=seconds, microseconds=micro)
            except OverflowError as e:
                raise WireError("a bad timedelta: {}".format(e)) from None
        raise WireError("unknown tag {!r} at offset {}".format(tag, self.pos - 1))

    def container(self, tag, depth):
        if depth >= MAX_DEPTH:
            raise WireError("the value is nested deeper than {} levels".format(MAX_DEPTH))
        count = self.length()
        # Every item takes at least one byte (two for a dict entry): a count
        # the data cannot hold is refused before any list is grown.
        if count * (2 if tag == b"d" else 1) > len(self.data) - self.pos:
            raise WireError("a count of {} items does not fit in what is left".format(count))
        try:
            if tag == b"d":
                result = {}
                for _ in range(count):
                    key = self.value(depth + 1)
                    result[key] = self.value(depth + 1)
                return result
            return _MAKERS[tag](self.value(depth + 1) for _ in range(count))
        except TypeError as e:  # an unhashable key or set element
            raise WireError("a bad key or set element: {}".format(e)) from None

    def datetime(self):
        fields = _DATETIME.unpack(self.take(_DATETIME.size))
        zone = self.take(1)
        tz = None
        try:
            if zone == b"z":
                tz = datetime.timezone(datetime.timedelta(microseconds=_OFFSET.unpack(self.take(8))[0]))
            elif zone != b"N":
                raise WireError("a datetime with a bad zone tag {!r}".format(zone))
            return datetime.datetime(*fields[:7], tzinfo=tz, fold=fields[7])
        except (ValueError, OverflowError) as e:
            raise WireError("a bad datetime: {}".format(e)) from None
