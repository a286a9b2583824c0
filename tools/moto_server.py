"""moto's server mode (`moto_server`), with one of its SQS costs taken out.

moto 5.2.5 checks each message it hands out against the queue's retention period by computing
every attribute of the queue, three of which scan all its messages: a receive of 10 from a queue
of 2,000 took about a second, and a burst on the intake queue drained at moto's speed, not the
transcoder's. Here the check reads the one attribute it needs. What SQS answers is unchanged.
"""

import sys

from moto.core.utils import unix_time
from moto.server import main
from moto.sqs.models import SQSBackend


def _within_retention(self, queue_name, message):
    queue = self.get_queue(queue_name)
    retain_until = int(queue.message_retention_period) + message.sent_timestamp / 1000
    return retain_until > unix_time()


SQSBackend.is_message_valid_based_on_retention_period = _within_retention

if __name__ == "__main__":
    sys.exit(main())
