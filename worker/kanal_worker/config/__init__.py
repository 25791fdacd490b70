"""Reading configuration as Kafka Connect users write it: .properties, REST JSON, manifests."""
