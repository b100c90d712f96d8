"""Dashboard sockets: live updates for the calls list and a call's page.

Routed behind `AllowedHostsOriginValidator(AuthMiddlewareStack(...))` (receptionist/routing.py): only our own
pages may open them, with the signed-in user's session. Each socket joins one group (calls/live.py) and
forwards its `call.changed` nudges as JSON; the page then re-fetches itself, so a socket never carries more
than a call id and status of the viewer's own business.

Refusals accept the socket and close it at once with a code, so the page's script can tell "stop" from a
network drop: 4403 not signed in or not a member of any business, 4404 no such call in the current business
(whether the id belongs to another business or to none: the answer is the same).
"""

from __future__ import annotations

import logging
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.http import Http404

from accounts.access import get_for_business, session_membership
from accounts.models import Business, Membership
from calls.live import CALL_CHANGED, business_calls_group, call_changed_message, call_group
from calls.models import Call

log = logging.getLogger(__name__)

CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404


@database_sync_to_async
def _current_business(scope: dict[str, Any]) -> Business | None:
    membership = session_membership(scope.get("user"), scope["session"])
    return membership.business if membership is not None else None


@database_sync_to_async
def _still_member(user: Any, business_id: int) -> bool:
    return Membership.objects.filter(user=user, business_id=business_id).exists()


@database_sync_to_async
def _call_status(business: Business, call_id: int) -> str | None:
    """The call's status if it belongs to the business, else None (another business's call looks absent)."""
    try:
        return get_for_business(Call.objects.only("id", "status", "business_id"), business, id=call_id).status
    except Http404:
        return None


class _DashboardSocket(AsyncJsonWebsocketConsumer):
    group: str | None = None
    business_id: int | None = None

    async def refuse(self, code: int) -> None:
        await self.accept()
        await self.close(code=code)

    async def join(self, group: str) -> None:
        self.group = group
        await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        pass  # the browser only listens

    async def call_changed(self, message: dict[str, Any]) -> None:
        # Someone removed from the business while the page is open hears nothing more of its calls.
        if self.business_id is not None and not await _still_member(self.scope["user"], self.business_id):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await self.send_json({"type": CALL_CHANGED, "call_id": message["call_id"], "status": message["status"]})

    async def signed_in_business(self) -> Business | None:
        """The user's current business, or None after refusing the socket."""
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.refuse(CLOSE_FORBIDDEN)
            return None
        business = await _current_business(self.scope)
        if business is None:
            await self.refuse(CLOSE_FORBIDDEN)
        else:
            self.business_id = business.id
        return business


class CallListSocket(_DashboardSocket):
    """`/ws/dashboard/calls/`: every change to any call of the current business."""

    async def connect(self) -> None:
        business = await self.signed_in_business()
        if business is not None:
            await self.join(business_calls_group(business.id))


class CallSocket(_DashboardSocket):
    """`/ws/dashboard/calls/<id>/`: changes to one call of the current business."""

    async def connect(self) -> None:
        business = await self.signed_in_business()
        if business is None:
            return
        call_id = int(self.scope["url_route"]["kwargs"]["call_id"])
        status = await _call_status(business, call_id)
        if status is None:
            await self.refuse(CLOSE_NOT_FOUND)
            return
        await self.join(call_group(call_id))
        if status in Call.FINAL_STATUSES:
            # It ended between the page's render and this socket: the page should re-read it now.
            await self.call_changed(call_changed_message(call_id=call_id, status=status))
