"""fake.pyhost.wire: the values it carries, and bytes from a host it refuses."""

import datetime
import pickle
import struct

import pytest

from fake.pyhost.wire import MAGIC, MAX_FRAME, WireError, decode, encode, frame, frame_length

VALUES = [
    None, True, False, 0, 1, -1, 2**200, -(2**200), 0.5, float("inf"), "", "héllo\n", "\ud800",
    b"", b"\x00\xff", [], [1, [2, [3]]], (), (1, "a"), {}, {"a": 1, 2: [None], (1, 2): b"x"},
    set(), {1, "a", (2, 3)}, frozenset({1, 2}),
    datetime.datetime(2026, 11, 27, 19, 30, 1, 123456),
    datetime.datetime(2026, 3, 29, 2, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=-3, minutes=-30))),
    datetime.datetime(2026, 10, 25, 1, 30, fold=1),
    datetime.date(1999, 12, 31), datetime.timedelta(days=-3, seconds=5, microseconds=7),
]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_values_come_back_equal_and_of_the_same_type(value):
    back = decode(encode(value))
    assert back == value and type(back) is type(value)
    if isinstance(value, datetime.datetime):
        assert back.utcoffset() == value.utcoffset() and back.fold == value.fold


def test_nan_comes_back_as_nan():
    back = decode(encode(float("nan")))
    assert back != back


class Custom:
    pass


@pytest.mark.parametrize("value, where", [
    (Custom(), "cannot send a value of type tests.unit.test_wire.Custom"),
    ({"k": [1, Custom()]}, "value['k'][1]: cannot send a value of type tests.unit.test_wire.Custom"),
    (bytearray(b"x"), "type bytearray"),
    (struct, "type module"),
])
def test_other_types_are_an_error_naming_the_type_and_place(value, where):
    with pytest.raises(WireError, match=where.replace("[", r"\[").replace("]", r"\]")):
        encode(value)


def test_subclasses_are_refused_too():
    class Name(str):
        pass

    with pytest.raises(WireError, match="Name"):
        encode(Name("x"))


def test_deep_nesting_is_refused_both_ways():
    deep = []
    for _ in range(200):
        deep = [deep]
    with pytest.raises(WireError, match="deeper than 100"):
        encode(deep)
    with pytest.raises(WireError, match="deeper than 100"):
        decode(b"l\x00\x00\x00\x01" * 200 + b"l\x00\x00\x00\x00")


@pytest.mark.parametrize("data, error", [
    (pickle.dumps({"a": 1}), "unknown tag"),
    (b"", "ends early"),
    (b"s\x00\x00\x00\x10abc", "ends early"),
    (b"l\xff\xff\xff\xff", "does not fit"),  # no list of 4 billion items is ever started
    (b"d\x00\x00\x00\x01l\x00\x00\x00\x00N", "bad key"),  # a list as a dict key
    (b"S\x00\x00\x00\x01d\x00\x00\x00\x00", "bad key"),
    (b"s\x00\x00\x00\x01\xff", "not UTF-8"),
    (b"NN", "left over"),
    (b"D" + struct.pack(">HBBBBBIB", 2026, 13, 1, 0, 0, 0, 0, 0) + b"N", "bad datetime"),
    (b"D" + struct.pack(">HBBBBBIB", 2026, 1, 1, 0, 0, 0, 0, 0) + b"?", "zone"),
    (b"a" + struct.pack(">HBB", 2026, 2, 30), "bad date"),
])
def test_malformed_bytes_are_a_wire_error(data, error):
    with pytest.raises(WireError, match=error):
        decode(data)


def test_frames_check_magic_and_size_before_reading_a_body():
    body = encode([1, 2])
    data = frame(body)
    assert frame_length(data[:6]) == len(body) and decode(data[6:]) == [1, 2]
    with pytest.raises(WireError, match="not a frame"):
        frame_length(pickle.dumps(1)[:6])
    with pytest.raises(WireError, match="more than the limit"):
        frame_length(MAGIC + struct.pack(">I", MAX_FRAME + 1))


def test_decode_never_unpickles(tmp_path):
    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):
            import os
            return (os.system, (f"touch {marker}",))

    with pytest.raises(WireError):
        decode(pickle.dumps(Exploit()))
    assert not marker.exists()
