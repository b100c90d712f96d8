"""Writes for calls, one module per concern (import the module you need; nothing is re-exported here):

- `lifecycle`: a call from creation (inbound, browser test) and its stream's start to finalisation, its token
  usage and cost, and Twilio's status callback;
- `recording`: a live call's transcript entries and events, written in batches off the audio path;
- `search_document`: the dashboard's full-text search document of a call (rebuilt, or appended to live);
- `forwards`: a forward to the business's transfer number (<Dial>) and its outcome;
- `errors`: what the receptionist's tools' writes raise (a sentence the model can act on), and the phone check;
- `customers`: a caller's Customer record and its call count;
- `bookings`: booking, moving and cancelling appointments;
- `messages`: messages for the team, taken on a call and handled on the dashboard;
- `notification_settings`: a business's post-call email switch and webhook endpoint.
"""
