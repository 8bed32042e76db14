"""newproxy/http/bodystream.py: a body handed from a front end to the upstream exchange as it arrives.
(Against nginx: tests/test_differential_unbuffered_body.py and tests/test_differential_h2_unbuffered_body.py.)"""

from __future__ import annotations

from newproxy.http.bodystream import BodyStream


def test_by_length_the_reads_go_as_they_are() -> None:
    stream = BodyStream(8, chunked=False, limit=100)
    assert len(stream) == 8 and stream
    assert stream.take() == b""  # nothing yet, not ended
    stream.add(b"abc")
    stream.add(b"")  # an empty read adds nothing
    stream.add(b"de")
    assert stream.take() == b"abcde"
    stream.add(b"fgh")
    stream.end()
    assert stream.take() == b"fgh" and stream.over
    assert stream.take() == b""


def test_chunked_a_chunk_per_read_and_the_last_chunk_once() -> None:
    stream = BodyStream(0, chunked=True, limit=100)
    stream.add(b"abc")
    assert stream.take() == b"3\r\nabc\r\n"
    stream.add(b"defghij")
    stream.add(b"k")
    stream.end()
    assert stream.take() == b"7\r\ndefghij\r\n1\r\nk\r\n0\r\n\r\n"
    assert stream.take() == b""
    empty = BodyStream(0, chunked=True, limit=100)
    empty.end()
    assert empty.take() == b"0\r\n\r\n" and empty.take() == b""


def test_the_client_is_held_past_the_limit_and_read_again_once_taken() -> None:
    switched: list[bool] = []
    stream = BodyStream(100, chunked=False, limit=4)
    stream.flow = switched.append
    stream.add(b"abcd")
    assert switched == [] and not stream.held
    stream.add(b"e")
    stream.add(b"f")
    assert switched == [False] and stream.held  # once
    assert stream.take() == b"abcdef"
    assert switched == [False, True] and not stream.held and stream.waiting == 0


def test_the_consumer_is_told_of_each_read_and_the_end() -> None:
    calls: list[int] = []
    stream = BodyStream(0, chunked=True, limit=100)
    stream.consumer = lambda: calls.append(stream.waiting)
    stream.add(b"ab")
    stream.end()
    assert calls == [2, 2]


def test_http2_frames_of_one_read_go_together_and_the_window_follows() -> None:
    taken: list[int] = []
    stream = BodyStream(0, chunked=True, limit=100)
    stream.on_taken = taken.append
    stream.gather(b"defgh")
    stream.gather(b"DEFGH")
    assert stream.take() == b""  # not until the read is over
    stream.read_over()
    assert stream.take() == b"a\r\ndefghDEFGH\r\n" and taken == [10]
    stream.gather(b"ij")
    stream.end()  # the end sends what its read brought first
    assert stream.take() == b"2\r\nij\r\n0\r\n\r\n" and taken == [10, 2]
