// Web push on the preferences page: register the service worker, subscribe with the site's
// VAPID public key, and send the subscription to the server (session + CSRF). No inline code.
(function () {
  "use strict";
  var section = document.getElementById("push");
  if (!section) return;
  var status = document.getElementById("push-status");
  var form = document.getElementById("push-form");
  var on = document.getElementById("push-on");
  var off = document.getElementById("push-off");
  var texts = {};
  document.getElementById("push-messages").content.querySelectorAll("[data-key]").forEach(function (node) {
    texts[node.dataset.key] = node.textContent;
  });

  function say(key) { status.textContent = texts[key]; status.dataset.state = key; }
  function csrf() { return form.querySelector("input[name=csrfmiddlewaretoken]").value; }
  function show(subscribed) { on.hidden = subscribed; off.hidden = !subscribed; say(subscribed ? "on" : "off"); }

  function keyBytes(base64url) {
    var padded = (base64url + "===".slice((base64url.length + 3) % 4)).replace(/-/g, "+").replace(/_/g, "/");
    var raw = atob(padded), bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    return bytes;
  }

  function post(url, body) {
    return fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRFToken": csrf()},
      body: JSON.stringify(body)
    }).then(function (response) {
      if (!response.ok) throw new Error("server answered " + response.status);
      return response;
    });
  }

  if (!("serviceWorker" in navigator) || !("PushManager" in window) || !("Notification" in window)) {
    say("unsupported");
    return;
  }
  if (!section.dataset.vapidKey) { say("unconfigured"); return; }
  form.hidden = false;
  if (Notification.permission === "denied") say("denied");

  var registration = navigator.serviceWorker.register(section.dataset.swUrl, {scope: "/"})
    .then(function () { return navigator.serviceWorker.ready; });

  registration.then(function (reg) { return reg.pushManager.getSubscription(); })
    .then(function (subscription) { if (Notification.permission !== "denied") show(!!subscription); })
    .catch(function () { say("unsupported"); });

  on.addEventListener("click", function () {
    say("working");
    Notification.requestPermission().then(function (permission) {
      if (permission !== "granted") { say("denied"); return null; }
      return registration.then(function (reg) {
        return reg.pushManager.subscribe({userVisibleOnly: true, applicationServerKey: keyBytes(section.dataset.vapidKey)});
      }).then(function (subscription) {
        return post(section.dataset.subscribeUrl, subscription.toJSON()).then(function () { show(true); });
      });
    }).catch(function () { say("failed"); });
  });

  off.addEventListener("click", function () {
    say("working");
    registration.then(function (reg) { return reg.pushManager.getSubscription(); })
      .then(function (subscription) {
        if (!subscription) return show(false);
        var endpoint = subscription.endpoint;
        return subscription.unsubscribe().then(function () {
          return post(section.dataset.unsubscribeUrl, {endpoint: endpoint});
        }).then(function () { show(false); });
      }).catch(function () { say("failed"); });
  });
})();
