"""JSON log lines name the service whose logger wrote them."""

from __future__ import annotations

import io
import json
import logging

from shared import logs


def test_each_line_names_the_service_of_its_logger_even_with_several_in_one_process(monkeypatch):
    monkeypatch.setattr(logs, "_configured", False)
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        logs.setup_logging("ledger")
        logs.setup_logging("window")  # a second service in the same process
        out = io.StringIO()
        root.handlers[0].setStream(out)
        logging.getLogger("m1.window").info("handled", extra={"queue": "window.ledger"})
        logging.getLogger("m1.ledger").warning("stopped")
        logging.getLogger("asyncio").error("not one of ours")
        lines = [json.loads(line) for line in out.getvalue().splitlines()]
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    assert [(x["logger"], x["service"], x["message"]) for x in lines] == [
        ("m1.window", "window", "handled"), ("m1.ledger", "ledger", "stopped"), ("asyncio", "ledger", "not one of ours")]
    assert lines[0]["queue"] == "window.ledger" and lines[0]["level"] == "INFO" and "ts" in lines[0]
