from django.db import migrations

# Texts written before the limits existed are shortened to fit, so that the new constraints can be added. Each
# shortened text ends with "…", and the owner sees it (and may rewrite it) on the settings pages.
LIMITS = [("Business", "greeting", 300), ("Business", "extra_instructions", 2000),
          ("Service", "description", 300), ("FAQEntry", "question", 200), ("FAQEntry", "answer", 600)]


def shorten_overlong_texts(apps, schema_editor):
    from django.db.models.functions import Length

    for model_name, field, limit in LIMITS:
        model = apps.get_model("accounts", model_name)
        for row in model.objects.annotate(chars=Length(field)).filter(chars__gt=limit).only("pk", field):
            setattr(row, field, getattr(row, field)[:limit - 1].rstrip() + "…")
            row.save(update_fields=[field])


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0002_business_phone_number_sid'),
    ]

    operations = [
        migrations.RunPython(shorten_overlong_texts, migrations.RunPython.noop),
    ]
