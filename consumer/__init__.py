"""The pika consumer of ``test_direct``: the "RabbitMQ directly" path of the demo."""
