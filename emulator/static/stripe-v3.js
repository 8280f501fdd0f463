/*
 * Stripe.js v3, as far as a Payment Element checkout uses it, served by the payments emulator at
 * /v3 for pages that run offline. Same names, promises and result shapes as
 * https://js.stripe.com/v3/ ({paymentIntent} or {error: {type, code, message, decline_code,
 * payment_intent}}); it talks to the emulator that served it, with the page's publishable key.
 *
 * Card fields live in a frame served by the emulator: the page's own code only ever holds the
 * Element, never a card number. Not implemented: other payment method types, Express Checkout,
 * Link, SetupIntents, Checkout (embedded or custom), Connect, tokens and sources.
 */
(function () {
  "use strict";
  if (window.Stripe && window.Stripe.emulator) {
    return;
  }

  var ORIGIN = scriptOrigin();
  var FRAME = ORIGIN + "/v3/elements-frame.html";
  var counter = 0;
  var mounted = {};
  var replies = {};

  function scriptOrigin() {
    var node = document.currentScript;
    if (!node) {
      var all = document.getElementsByTagName("script");
      for (var i = all.length - 1; i >= 0; i -= 1) {
        if (/\/(js\/)?v3\/?(\?.*)?$/.test(all[i].src)) {
          node = all[i];
          break;
        }
      }
    }
    return new URL(node && node.src ? node.src : location.href, location.href).origin;
  }

  function IntegrationError(message) {
    var error = new Error(message);
    error.name = "IntegrationError";
    return error;
  }

  function never() {
    return new Promise(function () {});
  }

  function nextId(prefix) {
    counter += 1;
    return prefix + counter + "_" + Math.random().toString(36).slice(2, 10);
  }

  // Stripe's form encoding: {card: {number: 1}, expand: ["a"]} → card[number]=1&expand[0]=a
  function encode(params, prefix, out) {
    Object.keys(params).forEach(function (name) {
      var value = params[name];
      var key = prefix ? prefix + "[" + name + "]" : name;
      if (value === undefined || value === null) {
        return;
      }
      if (typeof value === "object") {
        encode(value, key, out);
      } else {
        out.push(encodeURIComponent(key) + "=" + encodeURIComponent(String(value)));
      }
    });
    return out;
  }

  function connectionError() {
    return {
      type: "api_connection_error",
      message: "We could not reach Stripe. Check your connection and try again."
    };
  }

  // One call to the emulator's API with the publishable key in the parameters, as Stripe.js
  // sends it (a simple CORS request: no preflight): {object} or {error}.
  function request(key, method, path, params) {
    var query = encode(Object.assign({key: key}, params || {}), "", []).join("&");
    var url = ORIGIN + path;
    var init = {method: method, headers: {}};
    if (method === "GET") {
      url += "?" + query;
    } else {
      init.headers["Content-Type"] = "application/x-www-form-urlencoded";
      init.body = query;
    }
    return fetch(url, init).then(
      function (response) {
        return response.json().then(
          function (body) {
            if (!response.ok) {
              return {error: (body && body.error) || connectionError()};
            }
            return {object: body};
          },
          function () {
            return {error: connectionError()};
          }
        );
      },
      function () {
        return {error: connectionError()};
      }
    );
  }

  function intentId(clientSecret, method) {
    var match = /^(pi_[A-Za-z0-9]+)_secret_[A-Za-z0-9]+$/.exec(String(clientSecret || ""));
    if (!match) {
      throw IntegrationError(
        "Invalid value for " + method + ": value should be a PaymentIntent client secret of " +
          "the form ${id}_secret_${secret}."
      );
    }
    return match[1];
  }

  function redirectStatus(status) {
    if (status === "requires_payment_method") {
      return "failed";
    }
    return status === "processing" ? "pending" : "succeeded";
  }

  function returnTo(returnUrl, intent) {
    var url = new URL(returnUrl, location.href);
    url.searchParams.append("payment_intent", intent.id);
    url.searchParams.append("payment_intent_client_secret", intent.client_secret);
    url.searchParams.append("redirect_status", redirectStatus(intent.status));
    location.assign(url.toString());
    return never();
  }

  function actionUrl(action) {
    if (action.type === "redirect_to_url" && action.redirect_to_url) {
      return action.redirect_to_url.url;
    }
    if (action.type === "use_stripe_sdk" && action.use_stripe_sdk) {
      return action.use_stripe_sdk.stripe_js;
    }
    return null;
  }

  // Messages from the frames this script mounted: Element events, replies, sizes.
  window.addEventListener("message", function (event) {
    var data = event.data;
    if (event.origin !== ORIGIN || !data || data.stripeEmulatorFrame !== true) {
      return;
    }
    var element = mounted[data.elementId];
    if (!element || !element._frame || event.source !== element._frame.contentWindow) {
      return;
    }
    if (typeof data.height === "number") {
      element._frame.style.height = Math.ceil(data.height) + "px";
    }
    if (data.reply && replies[data.reply]) {
      var resolve = replies[data.reply];
      delete replies[data.reply];
      resolve(data.payload || {});
    }
    if (data.event) {
      element._emit(data.event, data.payload || {});
    }
  });

  // -------------------------------------------------------------------------------------------
  // Element

  function Element(group, type, options) {
    this._group = group;
    this._type = type;
    this._options = options || {};
    this._id = nextId("element");
    this._handlers = {};
    this._frame = null;
    this._ready = false;
    this._waiting = [];
  }

  Element.prototype.mount = function (target) {
    var node = typeof target === "string" ? document.querySelector(target) : target;
    if (!node || typeof node.appendChild !== "function") {
      throw IntegrationError(
        "The selector you specified (" + String(target) + ") applies to no DOM elements that " +
          "are currently on the page.\nMake sure the element exists on the page before " +
          "calling mount()."
      );
    }
    if (this._frame) {
      throw IntegrationError(
        "This Element is already mounted. Use `unmount()` to unmount the Element before " +
          "re-mounting."
      );
    }
    var settings = {
      id: this._id,
      type: this._type,
      key: this._group._stripe._key,
      parentOrigin: location.origin,
      hidePostalCode: Boolean(this._options.hidePostalCode),
      appearance: this._group._appearance || {}
    };
    var frame = document.createElement("iframe");
    frame.name = "__privateStripeFrame" + this._id;
    frame.title =
      this._type === "card" ? "Secure card payment input frame" : "Secure payment input frame";
    frame.setAttribute("allowtransparency", "true");
    frame.setAttribute("scrolling", "no");
    frame.style.border = "0";
    frame.style.width = "100%";
    frame.style.height = this._type === "card" ? "150px" : "250px";
    frame.style.display = "block";
    frame.style.overflow = "hidden";
    frame.src = FRAME + "#" + encodeURIComponent(JSON.stringify(settings));
    mounted[this._id] = this;
    this._frame = frame;
    node.appendChild(frame);
  };

  Element.prototype.unmount = function () {
    if (this._frame && this._frame.parentNode) {
      this._frame.parentNode.removeChild(this._frame);
    }
    delete mounted[this._id];
    this._frame = null;
    this._ready = false;
  };

  Element.prototype.destroy = function () {
    this.unmount();
    this._group._remove(this);
    this._handlers = {};
  };

  Element.prototype.on = function (event, handler) {
    (this._handlers[event] = this._handlers[event] || []).push(handler);
    return this;
  };
  Element.prototype.addEventListener = Element.prototype.on;

  Element.prototype.once = function (event, handler) {
    var self = this;
    function wrapped(payload) {
      self.off(event, wrapped);
      handler(payload);
    }
    return this.on(event, wrapped);
  };

  Element.prototype.off = function (event, handler) {
    var list = this._handlers[event] || [];
    this._handlers[event] = handler
      ? list.filter(function (h) {
          return h !== handler;
        })
      : [];
    return this;
  };
  Element.prototype.removeEventListener = Element.prototype.off;

  Element.prototype._emit = function (event, payload) {
    if (event === "ready") {
      this._ready = true;
      this._waiting.splice(0).forEach(function (resolve) {
        resolve();
      });
    }
    (this._handlers[event] || []).slice().forEach(function (handler) {
      handler(payload);
    });
  };

  Element.prototype._call = function (action, payload) {
    var self = this;
    if (!self._frame) {
      return Promise.resolve({
        error: {
          type: "validation_error",
          code: "element_not_mounted",
          message: "The Element is not mounted: call element.mount() first."
        }
      });
    }
    var ready = self._ready
      ? Promise.resolve()
      : new Promise(function (resolve) {
          self._waiting.push(resolve);
        });
    return ready.then(function () {
      return new Promise(function (resolve) {
        var reply = nextId("reply");
        replies[reply] = resolve;
        self._frame.contentWindow.postMessage(
          {stripeEmulatorFrame: true, action: action, reply: reply, payload: payload || {}},
          ORIGIN
        );
      });
    });
  };

  Element.prototype.update = function (options) {
    Object.assign(this._options, options || {});
    if (this._frame) {
      this._call("update", {hidePostalCode: Boolean(this._options.hidePostalCode)});
    }
  };
  Element.prototype.clear = function () {
    this._call("clear");
  };
  Element.prototype.focus = function () {
    this._call("focus");
  };
  Element.prototype.blur = function () {
    this._call("blur");
  };
  Element.prototype.collapse = function () {
    return this;
  };

  Element.prototype._paymentMethod = function (billingDetails) {
    return this._call("createPaymentMethod", {billing_details: billingDetails || null});
  };

  // -------------------------------------------------------------------------------------------
  // Elements

  function Elements(stripe, options) {
    this._stripe = stripe;
    this._clientSecret = options.clientSecret || null;
    this._appearance = options.appearance || {};
    this._elements = {};
  }

  Elements.prototype.create = function (type, options) {
    if (type !== "payment" && type !== "card") {
      throw IntegrationError(
        "elements.create(): the emulator's Stripe.js offers the 'payment' and 'card' Elements, " +
          "not '" + String(type) + "'."
      );
    }
    if (this._elements.payment || this._elements.card) {
      throw IntegrationError("Can only create one Element of type " + type + ".");
    }
    var element = new Element(this, type, options);
    this._elements[type] = element;
    return element;
  };

  Elements.prototype.getElement = function (type) {
    return this._elements[type] || null;
  };

  Elements.prototype._remove = function (element) {
    if (this._elements[element._type] === element) {
      delete this._elements[element._type];
    }
  };

  Elements.prototype._element = function () {
    return this._elements.payment || this._elements.card || null;
  };

  Elements.prototype.update = function (options) {
    if (options && options.appearance) {
      this._appearance = options.appearance;
    }
  };

  Elements.prototype.fetchUpdates = function () {
    return Promise.resolve({});
  };

  Elements.prototype.submit = function () {
    var element = this._element();
    if (!element) {
      return Promise.reject(IntegrationError("elements.submit(): no Payment Element is mounted."));
    }
    return element._call("validate").then(function (result) {
      return result.error ? {error: result.error} : {selectedPaymentMethod: "card"};
    });
  };

  // -------------------------------------------------------------------------------------------
  // Stripe

  function Stripe(key, options) {
    if (!(this instanceof Stripe)) {
      return new Stripe(key, options);
    }
    if (typeof key !== "string" || key === "") {
      throw IntegrationError(
        "Please call Stripe() with your publishable key. You used an empty string."
      );
    }
    if (/^(sk|rk)_/.test(key)) {
      throw IntegrationError(
        "You should not use your secret key with Stripe.js.\nPlease pass a publishable key " +
          "instead."
      );
    }
    if (!/^pk_/.test(key)) {
      throw IntegrationError(
        "Invalid value for Stripe(): apiKey should be a publishable key (pk_test_…)."
      );
    }
    this._key = key;
    this._options = options || {};
  }

  Stripe.emulator = true;
  Stripe.version = 3;

  Stripe.prototype.elements = function (options) {
    options = options || {};
    if (options.clientSecret !== undefined) {
      intentId(options.clientSecret, "elements(): clientSecret");
    }
    return new Elements(this, options);
  };

  Stripe.prototype.retrievePaymentIntent = function (clientSecret) {
    var id;
    try {
      id = intentId(clientSecret, "stripe.retrievePaymentIntent intent secret");
    } catch (error) {
      return Promise.reject(error);
    }
    return request(this._key, "GET", "/v1/payment_intents/" + id, {
      client_secret: clientSecret
    }).then(function (result) {
      return result.error ? {error: result.error} : {paymentIntent: result.object};
    });
  };

  Stripe.prototype._confirm = function (clientSecret, params) {
    var id = intentId(clientSecret, "confirm intent secret");
    var body = Object.assign({}, params, {client_secret: clientSecret, use_stripe_sdk: true});
    return request(this._key, "POST", "/v1/payment_intents/" + id + "/confirm", body);
  };

  // The 3-D Secure challenge in a dialog over the page; once it is answered, the intent as it
  // is then: {paymentIntent}, or {error} carrying it when authentication failed.
  Stripe.prototype._challenge = function (clientSecret, url) {
    var self = this;
    return new Promise(function (resolve) {
      var overlay = document.createElement("div");
      var frame = document.createElement("iframe");
      var expected = new URL(url, location.href).origin;
      overlay.style.position = "fixed";
      overlay.style.top = "0";
      overlay.style.left = "0";
      overlay.style.right = "0";
      overlay.style.bottom = "0";
      overlay.style.background = "rgba(0, 0, 0, 0.45)";
      overlay.style.display = "flex";
      overlay.style.alignItems = "center";
      overlay.style.justifyContent = "center";
      overlay.style.zIndex = "2147483647";
      frame.title = "3D Secure authentication";
      frame.name = "__privateStripeFrame" + nextId("challenge");
      frame.style.width = "420px";
      frame.style.maxWidth = "95vw";
      frame.style.height = "360px";
      frame.style.border = "0";
      frame.style.borderRadius = "8px";
      frame.style.background = "#fff";
      frame.src = url + (url.indexOf("?") < 0 ? "?" : "&") + "embedded=1";
      function answered(event) {
        var data = event.data;
        if (event.origin !== expected || event.source !== frame.contentWindow) {
          return;
        }
        if (!data || data.stripeEmulator3ds !== true) {
          return;
        }
        window.removeEventListener("message", answered);
        if (overlay.parentNode) {
          overlay.parentNode.removeChild(overlay);
        }
        resolve();
      }
      window.addEventListener("message", answered);
      overlay.appendChild(frame);
      document.body.appendChild(overlay);
    })
      .then(function () {
        return self.retrievePaymentIntent(clientSecret);
      })
      .then(function (result) {
        if (result.error) {
          return result;
        }
        var intent = result.paymentIntent;
        if (intent.status === "requires_payment_method" && intent.last_payment_error) {
          return {error: Object.assign({}, intent.last_payment_error, {payment_intent: intent})};
        }
        return {paymentIntent: intent};
      });
  };

  // After a confirmation: redirect (`always`), or handle 3-D Secure in a dialog and resolve.
  Stripe.prototype._settle = function (clientSecret, result, redirect, returnUrl) {
    if (result.error) {
      return Promise.resolve({error: result.error});
    }
    var intent = result.object;
    var action = intent.status === "requires_action" && intent.next_action;
    var url = action ? actionUrl(action) : null;
    if (redirect === "always") {
      if (url) {
        location.assign(url);
        return never();
      }
      return returnTo(returnUrl, intent);
    }
    if (url) {
      return this._challenge(clientSecret, url);
    }
    return Promise.resolve({paymentIntent: intent});
  };

  Stripe.prototype.confirmPayment = function (options) {
    var self = this;
    options = options || {};
    var elements = options.elements || null;
    var clientSecret = options.clientSecret || (elements && elements._clientSecret);
    var params = Object.assign({}, options.confirmParams || {});
    var redirect = options.redirect || "always";
    try {
      if (redirect !== "always" && redirect !== "if_required") {
        throw IntegrationError(
          "stripe.confirmPayment(): `redirect` must be 'always' or 'if_required'."
        );
      }
      if (!clientSecret) {
        throw IntegrationError(
          "stripe.confirmPayment(): pass `clientSecret`, or `elements` created with one."
        );
      }
      intentId(clientSecret, "stripe.confirmPayment intent secret");
      if (redirect === "always" && !params.return_url) {
        throw IntegrationError(
          "stripe.confirmPayment(): the `confirmParams.return_url` argument is required unless " +
            "passing `redirect: 'if_required'`"
        );
      }
      if (!params.payment_method && !(elements && elements._element())) {
        throw IntegrationError(
          "stripe.confirmPayment(): pass `elements` with a mounted Payment Element."
        );
      }
    } catch (error) {
      return Promise.reject(error);
    }
    var data = params.payment_method_data || {};
    delete params.payment_method_data;
    var method = params.payment_method
      ? Promise.resolve({paymentMethod: {id: params.payment_method}})
      : elements._element()._paymentMethod(data.billing_details);
    return method.then(function (made) {
      if (made.error) {
        return {error: made.error};
      }
      params.payment_method = made.paymentMethod.id;
      return self._confirm(clientSecret, params).then(function (result) {
        return self._settle(clientSecret, result, redirect, params.return_url);
      });
    });
  };

  Stripe.prototype.confirmCardPayment = function (clientSecret, data, options) {
    var self = this;
    data = Object.assign({}, data || {});
    options = options || {};
    try {
      intentId(clientSecret, "stripe.confirmCardPayment intent secret");
    } catch (error) {
      return Promise.reject(error);
    }
    var given = data.payment_method;
    delete data.payment_method;
    var method;
    if (typeof given === "string") {
      method = Promise.resolve({paymentMethod: {id: given}});
    } else if (given && given.card instanceof Element) {
      method = given.card._paymentMethod(given.billing_details);
    } else if (given === undefined) {
      method = Promise.resolve({paymentMethod: null});
    } else {
      return Promise.reject(
        IntegrationError(
          "stripe.confirmCardPayment(): `payment_method` must be a PaymentMethod id or " +
            "{card: element}."
        )
      );
    }
    return method.then(function (made) {
      if (made.error) {
        return {error: made.error};
      }
      if (made.paymentMethod) {
        data.payment_method = made.paymentMethod.id;
      }
      return self._confirm(clientSecret, data).then(function (result) {
        if (options.handleActions === false && !result.error) {
          return {paymentIntent: result.object};
        }
        return self._settle(clientSecret, result, "if_required", null);
      });
    });
  };

  Stripe.prototype.handleNextAction = function (options) {
    var self = this;
    var clientSecret = options && options.clientSecret;
    return this.retrievePaymentIntent(clientSecret).then(function (result) {
      if (result.error) {
        return result;
      }
      var intent = result.paymentIntent;
      if (intent.status !== "requires_action" || !intent.next_action) {
        throw IntegrationError(
          "handleNextAction: The PaymentIntent has a status of " + intent.status +
            "; only a PaymentIntent with a status of requires_action has a next action."
        );
      }
      var url = actionUrl(intent.next_action);
      if (intent.next_action.type === "redirect_to_url") {
        location.assign(url);
        return never();
      }
      return self._challenge(clientSecret, url);
    });
  };

  Stripe.prototype.handleCardAction = function (clientSecret) {
    return this.handleNextAction({clientSecret: clientSecret});
  };

  Stripe.prototype.createPaymentMethod = function (options) {
    options = options || {};
    var element = options.card || (options.elements && options.elements._element());
    if (!(element instanceof Element)) {
      return Promise.reject(
        IntegrationError(
          "stripe.createPaymentMethod(): pass {type: 'card', card: element} or {elements}."
        )
      );
    }
    var billing = options.billing_details || (options.params && options.params.billing_details);
    return element._paymentMethod(billing).then(function (made) {
      return made.error ? {error: made.error} : {paymentMethod: made.paymentMethod};
    });
  };

  Stripe.prototype.redirectToCheckout = function (options) {
    var sessionId = options && options.sessionId;
    if (typeof sessionId !== "string" || !/^cs_/.test(sessionId)) {
      return Promise.reject(
        IntegrationError(
          "stripe.redirectToCheckout: pass the `sessionId` of a Checkout Session (cs_…)."
        )
      );
    }
    location.assign(ORIGIN + "/checkout/pay/" + encodeURIComponent(sessionId));
    return never();
  };

  window.Stripe = Stripe;
})();
