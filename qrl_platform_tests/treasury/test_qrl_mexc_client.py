"""The signed client against the local fake MEXC: signing, retries, Retry-After, error mapping."""

import time
from decimal import Decimal

import pytest

from qrl_platform.treasury.mexc_client import ClientSettings, MexcClient, MexcError, MexcOutcomeUnknown, parse_price


class RecordingSleep:
    """Records waits instead of sleeping, so backoff and Retry-After are asserted without slowing tests."""

    def __init__(self):
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def client_for(fake, *, secret=None, sleep=None, **settings):
    options = {
        "base_url": fake.url,
        "timeout_seconds": 2.0,
        "max_retries": 2,
        "backoff_seconds": 0.01,
        "min_request_interval_seconds": 0.0,
        **settings,
    }
    return MexcClient(
        ClientSettings(**options),
        api_key=fake.api_key,
        api_secret=fake.api_secret if secret is None else secret,
        sleep=sleep or (lambda seconds: time.sleep(min(seconds, 0.05))),
    )


def test_signed_request_is_accepted_and_signs_the_exact_query_string(fake):
    account = client_for(fake).account()
    assert {row["asset"] for row in account["balances"]} >= {"QRL", "USDT"}
    request = fake.calls("/api/v3/account")[0]
    assert request["api_key"] == fake.api_key
    assert "recvWindow=5000" in request["query"] and "timestamp=" in request["query"]
    assert request["query"].split("&")[-1].startswith("signature=")
    assert fake.api_secret not in request["query"]


def test_public_endpoints_need_no_key(fake):
    client = MexcClient(ClientSettings(base_url=fake.url, min_request_interval_seconds=0))
    assert parse_price(client.ticker_price("QRLUSDT"), "QRLUSDT") == Decimal("0.5")
    assert client.exchange_info("QRLUSDT")["symbols"][0]["filters"] == []
    with pytest.raises(MexcError, match="need MEXC_API_KEY and MEXC_API_SECRET"):
        client.account()


def test_bad_secret_maps_700002_to_a_clear_message_and_is_not_retried(fake):
    with pytest.raises(MexcError) as raised:
        client_for(fake, secret="not-the-secret").account()
    assert raised.value.code == 700002
    assert "signature rejected: check MEXC_API_SECRET" in str(raised.value)
    assert "GET /api/v3/account" in str(raised.value)
    assert "not-the-secret" not in str(raised.value)
    assert len(fake.calls("/api/v3/account")) == 1


def test_clock_skew_beyond_recv_window_resyncs_once_against_server_time_then_retries(fake):
    fake.clock_offset_ms = 10_000  # the server is 10 s ahead: our timestamp is too old for 5 s
    client = client_for(fake)
    assert client.account()["accountType"] == "SPOT"
    paths = [call["path"] for call in fake.requests]
    assert paths == ["/api/v3/account", "/api/v3/time", "/api/v3/account"]
    assert client.clock_resyncs == 1 and 9_000 <= client.clock_offset_ms <= 11_000
    # Later requests are signed with the offset: no second refusal, no second resync.
    client.my_trades("QRLUSDT")
    assert [call["path"] for call in fake.requests][3:] == ["/api/v3/myTrades"] and client.clock_resyncs == 1


def test_700003_on_an_order_placement_resyncs_and_places_exactly_once(fake):
    client = client_for(fake)
    fake.inject("/api/v3/order", "code", method="POST", code=700003, msg="Timestamp outside recvWindow")
    params = {"symbol": "QRLUSDT", "side": "SELL", "type": "MARKET", "quantity": "10.00", "newClientOrderId": "c1"}
    assert client.place_order(params)["orderId"]
    posts = [call["path"] for call in fake.requests if call["path"] in ("/api/v3/order", "/api/v3/time")]
    assert posts == ["/api/v3/order", "/api/v3/time", "/api/v3/order"]
    assert len(fake.placed) == 1 and client.clock_resyncs == 1


def test_a_second_700003_after_the_resync_fails_with_the_measured_offset(fake):
    fake.inject("/api/v3/account", "code", times=2, code=700003, msg="Timestamp outside recvWindow")
    client = client_for(fake)
    with pytest.raises(MexcError, match="timestamp outside recvWindow.*again after resyncing the clock") as raised:
        client.account()
    assert raised.value.code == 700003
    assert [call["path"] for call in fake.requests] == ["/api/v3/account", "/api/v3/time", "/api/v3/account"]


def test_700003_whose_resync_fails_names_both_problems(fake):
    fake.inject("/api/v3/account", "code", code=700003, msg="Timestamp outside recvWindow")
    fake.inject("/api/v3/time", "500", times=3)
    with pytest.raises(MexcError, match="resyncing the clock against GET /api/v3/time failed too") as raised:
        client_for(fake).account()
    assert raised.value.code == 700003
    assert len(fake.calls("/api/v3/account")) == 1  # not retried on a clock we could not measure


def test_public_700003_is_not_resynced(fake):
    fake.inject("/api/v3/ticker/price", "code", code=700003, msg="Timestamp outside recvWindow")
    with pytest.raises(MexcError, match="timestamp outside recvWindow"):
        client_for(fake).ticker_price("QRLUSDT")
    assert fake.calls("/api/v3/time") == []


def test_429_honours_retry_after_then_succeeds(fake):
    sleep = RecordingSleep()
    fake.inject("/api/v3/ticker/price", "429", retry_after=3)
    price = client_for(fake, sleep=sleep).ticker_price("QRLUSDT")
    assert price["price"] == "0.5000"
    assert sleep.waits == [3.0]
    assert len(fake.calls("/api/v3/ticker/price")) == 2


def test_429_with_an_excessive_retry_after_fails_clearly_instead_of_stalling(fake):
    fake.inject("/api/v3/ticker/price", "429", retry_after=600)
    with pytest.raises(MexcError, match="rate limited .* exceeds the 60s limit"):
        client_for(fake, sleep=RecordingSleep()).ticker_price("QRLUSDT")


def test_5xx_is_retried_with_backoff(fake):
    sleep = RecordingSleep()
    fake.inject("/api/v3/account", "500", times=2)
    assert client_for(fake, sleep=sleep, backoff_seconds=0.5).account()["canTrade"] is True
    assert sleep.waits == [0.5, 1.0]  # exponential backoff
    assert len(fake.calls("/api/v3/account")) == 3


def test_persistent_5xx_gives_up_after_bounded_retries(fake):
    fake.inject("/api/v3/account", "500", times=10)
    with pytest.raises(MexcError, match="gave up after 3 attempts; last problem: server error HTTP 503"):
        client_for(fake, sleep=RecordingSleep()).account()
    assert len(fake.calls("/api/v3/account")) == 3


def test_timeout_is_retried_then_succeeds_and_then_fails_clearly(fake):
    fake.inject("/api/v3/exchangeInfo", "timeout", seconds=0.6)
    client = client_for(fake, timeout_seconds=0.2)
    assert client.exchange_info("QRLUSDT")["symbols"][0]["symbol"] == "QRLUSDT"
    fake.inject("/api/v3/exchangeInfo", "timeout", seconds=0.6, times=3)
    with pytest.raises(MexcError, match=r"gave up after 3 attempts; last problem: timed out after 0.2s"):
        client.exchange_info("QRLUSDT")


def test_malformed_json_is_a_clear_error(fake):
    fake.inject("/api/v3/ticker/price", "malformed")
    with pytest.raises(MexcError, match="GET /api/v3/ticker/price: malformed JSON in the response"):
        client_for(fake).ticker_price("QRLUSDT")


def test_oversold_30005_is_mapped(fake):
    params = {"symbol": "QRLUSDT", "side": "SELL", "type": "MARKET", "quantity": "5000.00", "newClientOrderId": "x1"}
    with pytest.raises(MexcError, match="oversold: the sell quantity exceeds the free balance") as raised:
        client_for(fake).test_order(params)
    assert raised.value.code == 30005
    fake.inject("/api/v3/order", "code", code=30005, msg="Oversold", method="POST")
    with pytest.raises(MexcError, match=r"oversold.*\[code 30005: Oversold\]"):
        client_for(fake).place_order({**params, "quantity": "10.00"})


def test_market_orders_disabled_is_mapped(fake):
    fake.market_orders_enabled = False
    params = {"symbol": "QRLUSDT", "side": "SELL", "type": "MARKET", "quantity": "10.00", "newClientOrderId": "x2"}
    with pytest.raises(MexcError, match="market orders are disabled for this symbol") as raised:
        client_for(fake).test_order(params)
    assert raised.value.code == 30019
    assert "MARKET" not in client_for(fake).exchange_info("QRLUSDT")["symbols"][0]["orderTypes"]


def test_order_5xx_is_never_blindly_repeated_but_reconciled_by_client_order_id(fake):
    params = {"symbol": "QRLUSDT", "side": "SELL", "type": "MARKET", "quantity": "10.00", "newClientOrderId": "qrl-x"}
    fake.inject("/api/v3/order", "500_after", method="POST")  # placed, but the answer is lost
    order = client_for(fake, sleep=RecordingSleep()).place_order(params)
    assert order["clientOrderId"] == "qrl-x" and order["status"] == "FILLED"
    assert len([call for call in fake.calls("/api/v3/order") if call["method"] == "POST"]) == 1
    assert len(fake.orders) == 1


def test_order_5xx_without_an_order_is_outcome_unknown(fake):
    params = {"symbol": "QRLUSDT", "side": "SELL", "type": "MARKET", "quantity": "10.00", "newClientOrderId": "qrl-y"}
    fake.inject("/api/v3/order", "500", method="POST")  # refused before placing: nothing to find
    with pytest.raises(MexcOutcomeUnknown, match="order qrl-y was not found afterwards"):
        client_for(fake, sleep=RecordingSleep()).place_order(params)
    assert fake.orders == {}


def test_an_order_that_never_reached_the_server_is_retried_not_unknown():
    from qrl_platform_tests.servers import free_port

    client = MexcClient(
        ClientSettings(base_url=f"http://127.0.0.1:{free_port()}", max_retries=2, min_request_interval_seconds=0),
        api_key="k",
        api_secret="s",
        sleep=RecordingSleep(),
    )
    params = {"symbol": "QRLUSDT", "side": "SELL", "type": "MARKET", "quantity": "1.00", "newClientOrderId": "z"}
    with pytest.raises(MexcError, match="gave up after 3 attempts; last problem: connection failed") as raised:
        client.place_order(params)
    assert not isinstance(raised.value, MexcOutcomeUnknown)


def test_client_side_rate_limit_spaces_requests(fake):
    client = client_for(fake, min_request_interval_seconds=0.05, sleep=time.sleep)
    started = time.monotonic()
    for _ in range(4):
        client.ticker_price("QRLUSDT")
    assert time.monotonic() - started >= 0.15


def test_repr_hides_credentials(fake):
    client = client_for(fake)
    assert fake.api_secret not in repr(client) and fake.api_key not in repr(client)
