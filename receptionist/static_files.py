"""WhiteNoise's static files, in a middleware that can run async.

WhiteNoise's own middleware is sync-only, and one sync middleware makes Django run every request's whole chain,
async views included, through its one thread-sensitive thread: under a burst of calls the incoming-call webhooks
then queue behind each other (and behind any dashboard page). Here a request for a static file is answered
by WhiteNoise in a pool thread (opening the file may touch the disk); every other request goes on as it came.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponseBase
from whitenoise.middleware import WhiteNoiseMiddleware


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Any) -> None:
        super().__init__(get_response)
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.serve_or_pass_on(request)
        return super().__call__(request)

    async def serve_or_pass_on(self, request: HttpRequest) -> HttpResponseBase:
        if self.autorefresh:  # development: looks the file up on disk
            static_file = await sync_to_async(self.find_file, thread_sensitive=False)(request.path_info)
        else:
            static_file = self.files.get(request.path_info)
        if static_file is not None:
            return await sync_to_async(self.serve, thread_sensitive=False)(static_file, request)
        return await self.get_response(request)
