"""What the hub's home page offers for each image: it looks inside the real images."""

import docker

from spawner.spawn.tools import ImageTools
from tests.support.stack import LAB_IMAGE, Stack

DATASCIENCE_IMAGE = LAB_IMAGE.replace("/lab:", "/datascience:")


def test_each_image_offers_the_tools_it_has(tmp_path):
    # The Stack only names this test's project (for the probe containers' labels) and the
    # datascience image's build record; nothing is started.
    stack = Stack(tmp_path)
    tools = ImageTools(stack.project)
    client = docker.from_env()
    tools.refresh(client, [LAB_IMAGE, DATASCIENCE_IMAGE, "dshub/no-such-image:0"])
    assert [t.key for t in tools.of(LAB_IMAGE)] == ["lab"]
    rstudio = ["rstudio"] if stack.has_rserver() else []
    assert [t.key for t in tools.of(DATASCIENCE_IMAGE)] == ["lab", "vscode", *rstudio]
    # An image it could not look at offers JupyterLab only, which every user image has.
    assert [t.key for t in tools.of("dshub/no-such-image:0")] == ["lab"]
    assert not client.containers.list(all=True, filters={"label": f"dshub.project={stack.project}"})
