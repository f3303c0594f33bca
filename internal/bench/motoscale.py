"""moto_server for the scale bench (internal/bench -scale), with two patches.

Run as `python motoscale.py -H HOST -p PORT` with the python of moto's venv.
Everything else is moto 5.2.5 as scripts/moto-venv.sh installs it; the bench
seeds and reads it through its HTTP API only.

1. Tag lookup by resource id. moto finds a resource's tags by scanning every
   tag of every resource in the region (TagBackend.describe_tags with a
   resource-id filter, one regular-expression match per tag). Describing N
   AMIs thus costs N x (all tags in the region): at 10,000 AMIs and their
   snapshots (about 250,000 tags a region) one DescribeImages would take
   hours. With a literal resource id the lookup here reads that resource's
   tags from moto's own dict: the same answer, in the same order.

2. DescribeImages pages. moto ignores MaxResults and NextToken and answers
   every AMI at once; EC2 answers at most MaxResults (5..1000) and a
   NextToken. Here it does too, so the bench counts the pages bakery reads.
"""

import sys

from moto.ec2.models.tags import TagBackend
from moto.ec2.responses.amis import AmisResponse
from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix
from moto.core.responses import ActionResult
from moto.server import main

_describe_tags = TagBackend.describe_tags


def _literal(value):
    return isinstance(value, str) and not any(c in value for c in "*?\\")


def describe_tags(self, filters=None):
    ids = (filters or {}).get("resource-id")
    if filters and set(filters) == {"resource-id"} and ids and all(_literal(i) for i in ids):
        out = []
        for rid in dict.fromkeys(ids):
            tags = self.tags.get(rid)
            if not tags:
                continue
            kind = EC2_PREFIX_TO_RESOURCE.get(get_prefix(rid), "")
            for key, value in dict(tags).items():
                out.append({"resource_id": rid, "key": key, "value": value, "resource_type": kind})
        return out
    return _describe_tags(self, filters)


TagBackend.describe_tags = describe_tags

_describe_images = AmisResponse.describe_images


def describe_images(self):
    max_results = self._get_int_param("MaxResults")
    if max_results is None or self._get_param("ImageIds", []):
        return _describe_images(self)
    self.error_on_dryrun()
    images = self.ec2_backend.describe_images(
        filters=self._filters_from_querystring(),
        exec_users=self._get_param("ExecutableUsers", []),
        owners=self._get_param("Owners", []),
    )
    start = int(self._get_param("NextToken") or 0)
    size = max(5, min(int(max_results), 1000))
    result = {"Images": images[start : start + size]}
    if start + size < len(images):
        result["NextToken"] = str(start + size)
    return ActionResult(result)


AmisResponse.describe_images = describe_images

if __name__ == "__main__":
    sys.exit(main())
