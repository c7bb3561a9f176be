// FlashNotify service worker: shows a push message and opens its page when clicked.
self.addEventListener("push", function (event) {
  var data = {};
  try { data = event.data ? event.data.json() : {}; } catch (error) { data = {body: event.data.text()}; }
  event.waitUntil(self.registration.showNotification(data.title || "FlashNotify", {
    body: data.body || "", tag: data.notification_id ? "notification-" + data.notification_id : undefined,
    data: {url: data.url || "/inbox/"}
  }));
});

self.addEventListener("notificationclick", function (event) {
  event.notification.close();
  var url = (event.notification.data && event.notification.data.url) || "/inbox/";
  event.waitUntil(clients.matchAll({type: "window", includeUncontrolled: true}).then(function (windows) {
    for (var i = 0; i < windows.length; i++) {
      if (windows[i].url === url && "focus" in windows[i]) return windows[i].focus();
    }
    return clients.openWindow(url);
  }));
});
