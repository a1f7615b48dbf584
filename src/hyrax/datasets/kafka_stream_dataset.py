"""The published Hyrax's import path of :class:`~hyrax.datasets.kafka.KafkaStreamDataset` (kept so that code written for
it runs unchanged; write ``from hyrax.datasets.kafka import KafkaStreamDataset``)."""

from hyrax.datasets.kafka import KafkaStreamDataset

__all__ = ["KafkaStreamDataset"]
