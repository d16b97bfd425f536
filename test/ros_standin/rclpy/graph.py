"""Topics of the in-process middleware: publishers deliver CDR round-tripped copies."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from standin_messages import cdr_round_trip


class Graph:
    """Publishers and subscriptions by fully qualified topic name."""

    def __init__(self) -> None:
        self.subscriptions: dict[str, list[Any]] = defaultdict(list)
        self.publishers: dict[str, list[Any]] = defaultdict(list)
        self.wire_bytes: dict[str, int] = defaultdict(int)

    def clear(self) -> None:
        self.subscriptions.clear()
        self.publishers.clear()
        self.wire_bytes.clear()

    def matched(self, publisher: Any) -> list[Any]:
        """Subscriptions of the publisher's topic with a compatible type and QoS."""
        from rclpy.qos import ReliabilityPolicy

        found = []
        for subscription in self.subscriptions.get(publisher.topic_name, []):
            if subscription.msg_type is not publisher.msg_type:
                continue
            if (
                subscription.qos.reliability == ReliabilityPolicy.RELIABLE
                and publisher.qos.reliability == ReliabilityPolicy.BEST_EFFORT
            ):
                continue  # incompatible QoS: DDS matches nothing
            found.append(subscription)
        return found

    def deliver(self, publisher: Any, message: Any) -> None:
        subscribers = self.matched(publisher)
        if not subscribers:
            return
        data, _ = cdr_round_trip(message)
        self.wire_bytes[publisher.topic_name] += len(data)
        for subscription in subscribers:
            _, copy = cdr_round_trip(message)
            subscription.callback(copy)


GRAPH = Graph()
