"""THREAD's two algorithms (RFC 5256 sections 4 and 5): ORDEREDSUBJECT groups by base
subject; REFERENCES links messages through Message-ID, References and In-Reply-To, then
merges threads with the same base subject. Every walk over the trees is iterative: a crafted
References chain may be as deep as the mailbox is large."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# The nearest ancestors a message's References name are kept, this many at most.
MAX_REFERENCES = 100
_MESSAGE_ID = re.compile(r"<([^<>]+)>")


@dataclass(frozen=True)
class Item:
    """What threading needs of one message: its sequence number, sent date (as SORT DATE
    has it), base subject and whether that subject marked a reply or forward."""

    seq: int
    sent: float
    subject: str
    reply: bool
    message_id: str | None
    references: tuple[str, ...]


@dataclass(eq=False)
class Node:
    """A container: a message, or a dummy (`item` None) that only References name."""

    item: Item | None = None
    parent: Node | None = None
    children: list[Node] = field(default_factory=list)


def message_ids(raw: str | None) -> list[str]:
    return ["".join(found.split()) for found in _MESSAGE_ID.findall(raw or "")]


def ordered_subject(items: list[Item]) -> list[Node]:
    """RFC 5256 5: one thread per base subject, its first message (by sent date) the
    parent of the others; threads in order of their first message."""
    threads: dict[str, Node] = {}
    for item in sorted(items, key=lambda i: (i.subject, i.sent, i.seq)):
        thread = threads.get(item.subject)
        if thread is None:
            threads[item.subject] = Node(item)
        else:
            _adopt(thread, Node(item))
    return sorted(threads.values(), key=_date)


def references(items: list[Item]) -> list[Node]:
    """RFC 5256 4, steps 1 to 6."""
    table: dict[str, Node] = {}
    for item in items:
        node = table.get(item.message_id) if item.message_id else None
        if node is None or node.item is not None:  # no Message-ID, or a duplicate one
            node = Node()
            fresh = item.message_id is not None and item.message_id not in table
            table[item.message_id if fresh and item.message_id else f"\0{item.seq}"] = node
        node.item = item
        previous: Node | None = None
        for reference in item.references[-MAX_REFERENCES:]:
            linked = table.setdefault(reference, Node())
            if previous is not None and linked.parent is None and not _reaches(previous, linked):
                _adopt(previous, linked)
            previous = linked
        _detach(node)  # a parent it had is probably wrong: the last reference is its own
        if previous is not None and not _reaches(previous, node):
            _adopt(previous, node)
    roots = _pruned([node for node in table.values() if node.parent is None])
    _sort_all(roots)
    roots = _merged_by_subject(roots)
    _sort_all(roots)
    return roots


def _adopt(parent: Node, child: Node) -> None:
    _detach(child)
    child.parent = parent
    parent.children.append(child)


def _detach(node: Node) -> None:
    if node.parent is not None:
        node.parent.children.remove(node)
        node.parent = None


def _reaches(node: Node | None, target: Node) -> bool:
    """Whether `target` is `node` or one of its ancestors (a link would make a loop)."""
    while node is not None:
        if node is target:
            return True
        node = node.parent
    return False


def _descendants(roots: list[Node]) -> list[Node]:
    """Every node under the roots, parents before their children."""
    order: list[Node] = []
    stack = list(roots)
    while stack:
        node = stack.pop()
        order.append(node)
        stack.extend(node.children)
    return order


def _pruned(roots: list[Node]) -> list[Node]:
    """Step 3: dummies without children go; a dummy's children take its place, except at
    the top, where a dummy with several children stays."""
    for node in reversed(_descendants(roots)):
        node.children = _without_dummies(node, node.children, top=False)
    return _without_dummies(None, roots, top=True)


def _without_dummies(parent: Node | None, nodes: list[Node], top: bool) -> list[Node]:
    kept: list[Node] = []
    for node in nodes:
        if node.item is None and not node.children:
            continue
        if node.item is None and (not top or len(node.children) == 1):
            for child in node.children:
                child.parent = parent
            kept.extend(node.children)
        else:
            kept.append(node)
    return kept


def _first(node: Node) -> Item:
    """The message a node sorts and merges by: its own, or a dummy's first child's."""
    while node.item is None:
        node = node.children[0]
    return node.item


def _date(node: Node) -> tuple[float, int]:
    item = _first(node)
    return item.sent, item.seq


def _sort_all(roots: list[Node]) -> None:
    """Steps 4 and 6: siblings by sent date, children before their parents are placed."""
    for node in reversed(_descendants(roots)):
        node.children.sort(key=_date)
    roots.sort(key=_date)


def _merged_by_subject(roots: list[Node]) -> list[Node]:
    """Step 5: top-level threads with the same base subject become one."""
    table: dict[str, Node] = {}
    for node in roots:
        item = _first(node)
        if not item.subject:
            continue
        held = table.get(item.subject)
        if (
            held is None
            or (node.item is None and held.item is not None)
            or (_first(held).reply and not item.reply)
        ):
            table[item.subject] = node
    dummies: list[Node] = []
    for node in roots:
        if node.parent is not None or (node.item is None and not node.children):
            continue  # merged into another thread already
        subject = _first(node).subject
        held = table.get(subject) if subject else None
        if held is None or held is node:
            continue
        if held.item is None and node.item is None:
            for child in list(node.children):
                _adopt(held, child)
        elif held.item is None:
            _adopt(held, node)
        elif node.item is None:
            _adopt(node, held)
            table[subject] = node
        elif not _first(held).reply and _first(node).reply:
            _adopt(held, node)
        else:
            dummy = Node()
            _adopt(dummy, held)
            _adopt(dummy, node)
            table[subject] = dummy
            dummies.append(dummy)
    return [
        node
        for node in roots + dummies
        if node.parent is None and (node.item is not None or node.children)
    ]


def render(roots: list[Node], number: dict[int, int] | None = None) -> str:
    """`(1 2 (3)(4 5))...`: a chain of single children is flat, siblings are
    parenthesized (RFC 5256 thread-list). `number` maps sequence numbers to UIDs."""
    out: list[str] = []
    stack: list[str | Node] = []
    for root in reversed(roots):
        stack += [")", root, "("]
    while stack:
        top = stack.pop()
        if isinstance(top, str):
            out.append(top)
            continue
        chain: list[str] = []
        node = top
        while True:
            if node.item is not None:
                chain.append(str(number[node.item.seq] if number else node.item.seq))
            if node.item is None or len(node.children) != 1:
                break
            node = node.children[0]
        out.append(" ".join(chain))
        if len(node.children) > 1:
            if chain:
                out.append(" ")
            for child in reversed(node.children):
                stack += [")", child, "("]
    return "".join(out)
