"""The broker's own configuration: rabbitmq.conf and the definitions generated from common.topology."""
