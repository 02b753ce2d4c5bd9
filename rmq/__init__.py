"""The broker's configuration: rabbitmq.conf and definitions generated from common.topology."""
