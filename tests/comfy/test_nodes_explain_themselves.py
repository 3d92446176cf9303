"""Every node of the pack explains itself (issue 12): a tooltip on each input and output, output ids that are
the names the page shows, and a help page per node that the server hands to the page's help panel."""

from __future__ import annotations

import urllib.request

import pytest
from animereward_testkit.comfy_paths import PACK_LINK_NAME, REPO_ROOT

from animereward.dimensions import DIMENSIONS

pytestmark = pytest.mark.comfy


def _ours() -> set[str]:
    """Every node the pack registers (nodes/node_list.py)."""
    from animereward_testkit.pack import pack_module

    return {cls.GET_SCHEMA().node_id for cls in pack_module("nodes.node_list").NODES}


def _pack_nodes():
    import nodes

    return {name: cls.GET_SCHEMA() for name, cls in nodes.NODE_CLASS_MAPPINGS.items()
            if name.startswith("AnimeReward") and not name.startswith("AnimeRewardTest")}


def test_every_input_and_output_has_a_tooltip(comfy):
    schemas = _pack_nodes()
    ours = _ours()
    assert set(schemas) >= ours  # a schema error drops every node of the pack: all of them are registered
    missing = [f"{name}.{x.id}" for name, s in schemas.items() for x in (*s.inputs, *s.outputs)
               if not (x.tooltip or "").strip()]
    assert missing == []
    for name in ours:  # and they say more than the name
        for x in (*schemas[name].inputs, *schemas[name].outputs):
            assert len(x.tooltip) >= 20 and x.tooltip.strip(".") != f"Score {x.id}", f"{name}.{x.id}: {x.tooltip}"


def test_output_ids_are_the_names_the_page_shows(comfy):
    for name, s in _pack_nodes().items():
        inputs = {i.id for i in s.inputs}
        for o in s.outputs:
            # an output may not share an input's id (V3 refuses it): only then do id and name differ
            if o.display_name not in inputs:
                assert o.id == (o.display_name or o.id), f"{name}: output {o.id!r} shows as {o.display_name!r}"


def test_each_node_has_a_help_page_the_server_serves(comfy, comfy_server):
    schemas = _pack_nodes()
    assert set(schemas) >= _ours()
    for name, s in schemas.items():
        page = REPO_ROOT / "web" / "docs" / f"{name}.md"
        assert page.is_file(), f"{name} has no help page {page.relative_to(REPO_ROOT)}"
        text = page.read_text()
        assert "## Inputs" in text and "## Outputs" in text, name
        for x in (*s.inputs, *s.outputs):  # dimension toggles and outputs are described together
            assert x.id in DIMENSIONS or x.id in text or (x.display_name or "") in text, f"{name}: {x.id}"
        # where frontend 1.32 asks for it when the help panel opens
        url = f"{comfy_server.url}/extensions/{PACK_LINK_NAME}/docs/{name}.md"
        with urllib.request.urlopen(url, timeout=10) as resp:
            assert resp.status == 200 and resp.read().decode() == text
