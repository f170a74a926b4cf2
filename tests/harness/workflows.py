"""UI-format workflows (what the canvas saves in workflows/) turned into the API prompt the canvas queues."""
from __future__ import annotations

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
NOTE_TYPES = {"MarkdownNote", "Note"}


def widget_names(info: dict) -> list[str]:
    """Widget inputs in /object_info order (what a UI workflow's widgets_values follow); a seed's
    control_after_generate value follows it as "<name>:control"."""
    names = []
    for group in ("required", "optional"):
        for name, spec in info["input"].get(group, {}).items():
            if isinstance(spec[0], list) or spec[0] in WIDGET_TYPES:
                names.append(name)
                if len(spec) > 1 and spec[1].get("control_after_generate"):
                    names.append(f"{name}:control")
    return names


def widget_values(node: dict, info: dict) -> dict:
    """A UI node's widget values by input name (checked: one value per widget)."""
    names = widget_names(info)
    values = node.get("widgets_values", [])
    assert len(names) == len(values), (node["type"], names, values)
    return {n: v for n, v in zip(names, values) if not n.endswith(":control")}


def workflow_prompt(workflow: dict, object_info: dict) -> dict:
    """The API prompt for a UI-format workflow: widget values by name, links as [node id, slot]."""
    links = {link[0]: link for link in workflow["links"]}
    prompt = {}
    for node in workflow["nodes"]:
        if node["type"] in NOTE_TYPES or node.get("mode", 0) in (2, 4):      # notes; muted/bypassed nodes
            continue
        inputs = widget_values(node, object_info[node["type"]])
        for slot in node.get("inputs", []):
            if slot.get("link") is not None:
                _, origin, origin_slot, _, _, _ = links[slot["link"]]
                inputs[slot["name"]] = [str(origin), origin_slot]
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt
