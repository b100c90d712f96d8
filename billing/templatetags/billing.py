from django import template

from billing.models import BillingAccount

register = template.Library()


@register.inclusion_tag("billing/_banner.html")
def billing_banner(business):
    """The dashboard's warning while calls are being refused (set by the call gate, cleared when calls resume)."""
    account = BillingAccount.objects.filter(business=business).first() if business else None
    return {"account": account if account and account.blocked_at else None}
