"""Alert streams: decoding alert packets and serving a trained model on a Kafka topic (infer_stream)."""
