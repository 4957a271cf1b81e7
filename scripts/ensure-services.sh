#!/usr/bin/env bash
# Start the local RabbitMQ and PostgreSQL if they are not running, and wait until both answer.
set -euo pipefail

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432; }
rabbit_up() { rabbitmq-diagnostics -q check_port_connectivity >/dev/null 2>&1; }

if ! pg_up; then
  echo "starting PostgreSQL ..."
  if command -v pg_ctlcluster >/dev/null; then
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  fi
  for _ in $(seq 1 60); do pg_up && break; sleep 1; done
  pg_up || { echo "PostgreSQL did not come up on 127.0.0.1:5432" >&2; exit 1; }
fi

if ! rabbit_up; then
  echo "starting RabbitMQ ..."
  rabbitmq-server -detached || true
  rabbitmqctl -q await_startup --timeout 120
  for _ in $(seq 1 60); do rabbit_up && break; sleep 1; done
  rabbit_up || { echo "RabbitMQ did not come up on 127.0.0.1:5672" >&2; exit 1; }
fi
echo "PostgreSQL and RabbitMQ are up"
