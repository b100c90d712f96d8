// The browser knows the owner's time zone: fill it into the sign-up form's hidden field ("fill"), and on
// onboarding preselect it in the list while the business is still on the default ("suggest"). The server checks
// the name against its own time zone list either way.
(function () {
  "use strict";
  var zone;
  try {
    zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  } catch (error) {
    return;
  }
  if (!zone) return;
  document.querySelectorAll("[data-browser-time-zone]").forEach(function (field) {
    if (field.dataset.browserTimeZone === "fill") {
      field.value = zone;
    } else if (field.tagName === "SELECT" && Array.prototype.some.call(field.options, function (o) { return o.value === zone; })) {
      field.value = zone;
    }
  });
})();
