"""Posting back an operator's admin page the way a browser would, for tests of what the admin lets through."""

from __future__ import annotations

from django import forms
from django.http import HttpResponse


def _posted(field: forms.BoundField) -> dict[str, object]:
    """What the browser sends for one rendered field: nothing for an unticked box or an empty value."""
    value = field.value()
    if isinstance(field.field, forms.NullBooleanField):
        return {field.html_name: {None: "unknown", True: "true", False: "false"}[value]}
    if isinstance(field.field, forms.BooleanField):
        return {field.html_name: "on"} if value else {}
    if value is None:
        return {}
    if isinstance(field.field.widget, forms.MultiWidget):  # the admin's split date and time
        return {f"{field.html_name}_{i}": str(part) for i, part in enumerate(field.field.widget.decompress(value))
                if part is not None}
    if isinstance(value, (list, tuple)):
        return {field.html_name: [str(v) for v in value]}
    return {field.html_name: str(value)}


def admin_form_data(page: HttpResponse) -> dict[str, object]:
    """The POST data of an admin change page submitted as it was shown: the object's form, and each inline's
    management form and rows. Read-only fields are not in it, as they are not in the browser's form."""
    shown = [page.context["adminform"].form]
    for inline in page.context["inline_admin_formsets"]:
        shown += [inline.formset.management_form, *inline.formset.forms]
    data: dict[str, object] = {}
    for form in shown:
        for field in form:
            data.update(_posted(field))
    return data
