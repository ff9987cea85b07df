"""The reference backend over real HTTP on loopback: contract endpoints, lifecycle, fault injection."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from agent.devserver import ReferenceBackend


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def post(http: requests.Session, backend: ReferenceBackend, path: str, body: Any = None,
         **kwargs: Any) -> requests.Response:
    return http.post(backend.url + path, json=body, timeout=5, **kwargs)


def register(http: requests.Session, backend: ReferenceBackend) -> dict[str, str]:
    answer = post(http, backend, "/api/devices/register", {})
    assert answer.status_code == 201
    return answer.json()


def item(device_id: str, event_id: str = "ev-1", **changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"productId": "P001", "quantity": 2, "confidence": 0.92,
                               "deviceId": device_id, "eventId": event_id,
                               "detectedAt": "2026-12-04T10:00:00.123Z", "name": "Organic Apples"}
    payload.update(changes)
    return payload


def test_health(backend: ReferenceBackend, http: requests.Session) -> None:
    answer = http.get(backend.url + "/health", timeout=5)
    assert answer.status_code == 200 and answer.json() == {"status": "ok"}


def test_register_answers_201_with_device_id_and_code(backend: ReferenceBackend,
                                                      http: requests.Session) -> None:
    first, second = register(http, backend), register(http, backend)
    assert first["deviceId"] != second["deviceId"]
    assert first["code"] != second["code"]
    assert all(len(d["code"]) == 4 and d["code"].isdigit() for d in (first, second))
    # No body at all is fine too; a body that is not JSON is not.
    assert http.post(backend.url + "/api/devices/register", timeout=5).status_code == 201
    bad = http.post(backend.url + "/api/devices/register", data=b"{oops", timeout=5)
    assert bad.status_code == 422


def test_basket_is_idempotent_by_key(backend: ReferenceBackend, http: requests.Session) -> None:
    device = register(http, backend)["deviceId"]
    first = post(http, backend, "/api/basket", item(device), headers={"Idempotency-Key": "ev-1"})
    assert first.status_code == 201 and first.json()["status"] == "stored"
    repeat = post(http, backend, "/api/basket", item(device), headers={"Idempotency-Key": "ev-1"})
    assert repeat.status_code == 200 and repeat.json()["status"] == "duplicate"
    # Without the header the eventId is the key.
    assert post(http, backend, "/api/basket", item(device)).status_code == 200
    assert post(http, backend, "/api/basket", item(device, "ev-2")).status_code == 201
    listed = http.get(backend.url + "/api/basket", params={"deviceId": device}, timeout=5).json()
    assert [entry["eventId"] for entry in listed] == ["ev-1", "ev-2"]
    assert listed[0]["quantity"] == 2 and listed[0]["productId"] == "P001"


def test_basket_for_an_unknown_device_is_404(backend: ReferenceBackend,
                                             http: requests.Session) -> None:
    answer = post(http, backend, "/api/basket", item("nobody"))
    assert answer.status_code == 404
    assert backend.basket_items() == []


def test_pending_is_400_until_paired_then_stored_once(backend: ReferenceBackend,
                                                      http: requests.Session) -> None:
    device = register(http, backend)
    assert post(http, backend, "/api/pending-items", item(device["deviceId"])).status_code == 400
    assert backend.pending_items() == []
    paired = post(http, backend, "/api/devices/pair", {"code": device["code"]})
    assert paired.status_code == 200 and paired.json()["deviceId"] == device["deviceId"]
    assert post(http, backend, "/api/pending-items", item(device["deviceId"])).status_code == 201
    assert post(http, backend, "/api/pending-items", item(device["deviceId"])).status_code == 200
    listed = http.get(backend.url + "/api/pending-items", timeout=5).json()
    assert len(listed) == 1 and listed[0]["name"] == "Organic Apples"


def test_pairing_codes(backend: ReferenceBackend, http: requests.Session) -> None:
    device = register(http, backend)
    assert post(http, backend, "/api/devices/pair", {"code": "12"}).status_code == 422
    assert http.post(backend.url + "/api/devices/pair", data=b"nope", timeout=5).status_code == 422
    other = "0000" if device["code"] != "0000" else "0001"
    assert post(http, backend, "/api/devices/pair", {"code": other}).status_code == 404
    assert post(http, backend, "/api/devices/pair", {"code": device["code"]}).status_code == 200
    # A code is used up by pairing.
    assert post(http, backend, "/api/devices/pair", {"code": device["code"]}).status_code == 404
    assert backend.devices()[0]["paired"] is True


@pytest.mark.parametrize("path", ["/api/basket", "/api/pending-items"])
def test_invalid_items_are_422_never_400(backend: ReferenceBackend, http: requests.Session,
                                         path: str) -> None:
    device = register(http, backend)["deviceId"]
    answer = post(http, backend, path, item(device, confidence=7))
    assert answer.status_code == 422
    assert answer.json()["problems"] == ["confidence must be a number from 0 to 1"]
    not_json = http.post(backend.url + path, data=b"[", timeout=5)
    assert not_json.status_code == 422


def test_listing_filters_by_device(backend: ReferenceBackend, http: requests.Session) -> None:
    one, two = register(http, backend)["deviceId"], register(http, backend)["deviceId"]
    post(http, backend, "/api/basket", item(one, "a"))
    post(http, backend, "/api/basket", item(two, "b"))
    assert [i["eventId"] for i in backend.basket_items(one)] == ["a"]
    assert [i["eventId"] for i in backend.basket_items()] == ["a", "b"]
    everyone = http.get(backend.url + "/api/basket", timeout=5).json()
    assert len(everyone) == 2


def test_forget_over_http_drops_every_device(backend: ReferenceBackend,
                                             http: requests.Session) -> None:
    device = register(http, backend)["deviceId"]
    post(http, backend, "/api/basket", item(device))
    answer = post(http, backend, "/api/admin/forget", {})
    assert answer.status_code == 200 and answer.json() == {"forgotten": 1}
    assert backend.devices() == [] and backend.basket_items() == []
    assert post(http, backend, "/api/basket", item(device)).status_code == 404


def test_unknown_paths_and_methods(backend: ReferenceBackend, http: requests.Session) -> None:
    assert http.get(backend.url + "/nope", timeout=5).status_code == 404
    assert http.delete(backend.url + "/api/basket", timeout=5).status_code == 405
    assert http.put(backend.url + "/health", timeout=5).status_code == 405


def test_chunked_and_bad_lengths_are_refused(backend: ReferenceBackend,
                                             http: requests.Session) -> None:
    chunked = http.post(backend.url + "/api/basket", data=iter([b"{}"]), timeout=5)
    assert chunked.status_code == 411
    with socket.create_connection(("127.0.0.1", backend.port), timeout=5) as sock:
        sock.sendall(b"POST /api/basket HTTP/1.1\r\nHost: x\r\nContent-Length: zz\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 422")
    with socket.create_connection(("127.0.0.1", backend.port), timeout=5) as sock:
        sock.sendall(b"POST /api/basket HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 413")


def test_concurrent_repeats_of_one_event_store_it_once(backend: ReferenceBackend) -> None:
    with requests.Session() as setup:
        device = register(setup, backend)["deviceId"]
    statuses: list[int] = []
    lock = threading.Lock()

    def send() -> None:
        with requests.Session() as own:
            status = post(own, backend, "/api/basket", item(device)).status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=send) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(statuses) == [200] * 11 + [201]
    assert len(backend.basket_items()) == 1


# -- lifecycle -------------------------------------------------------------------------------

def test_stop_cuts_keep_alive_connections_and_start_serves_the_same_data(
        backend: ReferenceBackend, http: requests.Session) -> None:
    device = register(http, backend)["deviceId"]
    post(http, backend, "/api/basket", item(device))
    url = backend.url
    backend.stop()
    assert not backend.running
    with pytest.raises(requests.ConnectionError):
        http.get(url + "/health", timeout=2)
    backend.stop()  # a second stop is harmless
    backend.start()
    assert backend.url == url
    assert http.get(url + "/health", timeout=5).status_code == 200
    assert len(backend.basket_items(device)) == 1


def test_a_database_file_keeps_data_across_backends(tmp_path: Path) -> None:
    db = tmp_path / "backend.sqlite"
    with ReferenceBackend(db) as first, requests.Session() as http:
        device = register(http, first)["deviceId"]
        post(http, first, "/api/basket", item(device))
    with ReferenceBackend(db) as second:
        assert [entry["deviceId"] for entry in second.devices()] == [device]
        assert len(second.basket_items(device)) == 1


def test_url_brackets_an_ipv6_host() -> None:
    backend = ReferenceBackend(host="::1", port=4567)
    try:
        assert backend.url == "http://[::1]:4567"
    finally:
        backend.close()


# -- fault injection ---------------------------------------------------------------------------

def test_injected_answers_are_used_in_order_then_normal_service_resumes(
        backend: ReferenceBackend, http: requests.Session) -> None:
    backend.inject("/api/basket", 503, times=2, retry_after=9, body="busy")
    backend.inject("/api/basket", 429)
    answers = [post(http, backend, "/api/basket", item("nobody")) for _ in range(4)]
    assert [a.status_code for a in answers] == [503, 503, 429, 404]
    assert answers[0].headers["Retry-After"] == "9" and answers[0].text == "busy"
    assert "Retry-After" not in answers[2].headers
    assert [call.injected for call in backend.calls] == [True, True, True, False]
    assert backend.faults.pending() == 0


def test_injection_matches_only_its_path_prefix(backend: ReferenceBackend,
                                                http: requests.Session) -> None:
    backend.inject("/api/pending", 500)
    assert http.get(backend.url + "/health", timeout=5).status_code == 200
    assert post(http, backend, "/api/pending-items", item("x")).status_code == 500


def test_injected_raw_bytes_give_an_unreadable_answer(backend: ReferenceBackend,
                                                      http: requests.Session) -> None:
    backend.inject("/api/devices/register", raw=b"HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\n{")
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        post(http, backend, "/api/devices/register", {})
    backend.inject("/api/devices/register", raw=b"")
    with pytest.raises(requests.ConnectionError):
        post(http, backend, "/api/devices/register", {})
    assert [call.status for call in backend.calls] == [0, 0]
    assert backend.devices() == []


def test_an_injected_delay_is_cut_short_by_stop(backend: ReferenceBackend) -> None:
    backend.inject("/api/basket", 201, delay_s=60.0)
    errors: list[BaseException] = []

    def slow_call() -> None:
        try:
            requests.post(backend.url + "/api/basket", json={}, timeout=30)
        except requests.RequestException as exc:
            errors.append(exc)

    thread = threading.Thread(target=slow_call)
    thread.start()
    assert backend.faults.wait_taken(5)
    backend.stop()
    thread.join(10)  # bounds a broken stop(); the delay itself is 60 s
    assert not thread.is_alive()
    # Cut short: the caller got no answer, and no answered call was recorded.
    assert len(errors) == 1 and isinstance(errors[0], requests.ConnectionError)
    assert backend.calls == []


def test_passthrough_stores_before_answering(backend: ReferenceBackend) -> None:
    with requests.Session() as setup:
        device = register(setup, backend)["deviceId"]
    backend.inject("/api/basket", passthrough=True, delay_s=60.0)
    errors: list[BaseException] = []

    def send() -> None:
        try:
            requests.post(backend.url + "/api/basket", json=item(device), timeout=30)
        except requests.RequestException as exc:
            errors.append(exc)

    thread = threading.Thread(target=send)
    thread.start()
    assert backend.wait_calls(2, 5)
    # Stored, but the caller has had no answer yet.
    assert len(backend.basket_items(device)) == 1
    assert thread.is_alive()
    backend.stop()
    thread.join(10)
    assert not thread.is_alive()
    # The backend went away before answering: to the caller it is a dropped connection.
    assert len(errors) == 1 and isinstance(errors[0], requests.ConnectionError)


def test_wait_calls_times_out(backend: ReferenceBackend) -> None:
    assert backend.wait_calls(1, 0.0) is False


def test_bad_injections_are_rejected(backend: ReferenceBackend) -> None:
    with pytest.raises(ValueError):
        backend.inject("/api/basket", 500, times=0)
    with pytest.raises(ValueError):
        backend.inject("/api/basket", 500, delay_s=-1)


def test_each_call_records_the_body_event_id(backend: ReferenceBackend,
                                             http: requests.Session) -> None:
    device = register(http, backend)["deviceId"]
    backend.inject("/api/basket", 503)
    backend.inject("/api/basket", raw=b"")
    post(http, backend, "/api/basket", item(device, "ev-a"), headers={"Idempotency-Key": "k-a"})
    with pytest.raises(requests.ConnectionError):
        post(http, backend, "/api/basket", item(device, "ev-b"))
    post(http, backend, "/api/basket", item(device, "ev-c"), headers={"Idempotency-Key": "k-c"})
    http.post(backend.url + "/api/basket", data=b"not json", timeout=5)
    post(http, backend, "/api/basket", ["eventId"])
    post(http, backend, "/api/basket", item(device, 7))  # not a string: not an id
    calls = [(c.status, c.event_id, c.idempotency_key) for c in backend.calls[1:]]
    assert calls[:3] == [(503, "ev-a", "k-a"), (0, "ev-b", None), (201, "ev-c", "k-c")]
    assert [event_id for _, event_id, _ in calls[3:]] == [None, None, None]
    assert backend.calls[0].event_id is None  # register: {} has no eventId


def test_a_body_cut_off_by_a_client_that_went_away_is_not_handled(
        backend: ReferenceBackend, http: requests.Session) -> None:
    device = register(http, backend)["deviceId"]
    with socket.create_connection((backend.host, backend.port), timeout=5) as sock:
        sock.sendall(b"POST /api/basket HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Idempotency-Key: ev-cut\r\nContent-Length: 400\r\n\r\n{\"eventId\": \"ev-")
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(100) == b""  # closed without an answer
    assert post(http, backend, "/api/basket", item(device, "ev-ok")).status_code == 201
    assert [call.path for call in backend.calls] == ["/api/devices/register", "/api/basket"]
    assert [stored["eventId"] for stored in backend.basket_items()] == ["ev-ok"]
