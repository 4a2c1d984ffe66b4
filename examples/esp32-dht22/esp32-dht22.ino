/*
 * ESP32 / ESP8266 + DHT22 for Pulseboard, in Pulseboard's generic format
 * (formats/generic.ts):
 *
 *   devices/<id>/status     "online" (retained) after every connect; the last will is
 *                           "offline" (retained, QoS 1), published by the broker if the
 *                           connection drops without a DISCONNECT
 *   devices/<id>/telemetry  {"temperature":21.4,"humidity":45.1,"relay":false,"rssi":-61,
 *                            "units":{"temperature":"°C","humidity":"%","rssi":"dBm"}}
 *                           every telemetryIntervalMs, and at once after a relay command
 *   devices/<id>/commands   {"name":"relay","value":true|false|1|0|"ON"|"OFF"|"TOGGLE"}
 *                           {"name":"interval","value":<ms>}
 *
 * Libraries (Arduino Library Manager): PubSubClient by Nick O'Leary (2.8 or later),
 * "DHT sensor library" by Adafruit (with "Adafruit Unified Sensor"), ArduinoJson 7.
 */
#if defined(ESP8266)
#include <ESP8266WiFi.h>
#elif defined(ESP32)
#include <WiFi.h>
#else
#error "This sketch is for ESP32 or ESP8266 boards"
#endif
#include <PubSubClient.h>
#include <DHT.h>
#include <ArduinoJson.h>
#include <math.h>
#include <strings.h>

// ---- Settings --------------------------------------------------------------------------

const char* const WIFI_SSID = "your-ssid";
const char* const WIFI_PASSWORD = "your-password";

// The LAN address that `pulseboard start` prints next to "MQTT" (not localhost).
const char* const MQTT_HOST = "192.168.1.20";
const uint16_t MQTT_PORT = 1883;
// Pulseboard's own broker takes anonymous clients; fill these in for a broker that does not.
const char* const MQTT_USER = "";
const char* const MQTT_PASSWORD = "";

// One topic level (no '/', '+' or '#'). It is also the MQTT client id, so it must be unique
// on the broker: a second client with the same id disconnects the first.
const char* const DEVICE_ID = "esp32-dht22";

const uint8_t DHT_PIN = 4;  // GPIO4 (D2 on NodeMCU and Wemos D1 mini boards)
#if defined(ESP8266)
const uint8_t RELAY_PIN = 2;         // GPIO2 (D4): the on-board LED of ESP-12 boards
const bool RELAY_ACTIVE_LOW = true;  // that LED lights when the pin is LOW
#else
const uint8_t RELAY_PIN = 2;  // the on-board LED of many ESP32 dev boards
const bool RELAY_ACTIVE_LOW = false;
#endif

// Publish interval; the "interval" command changes it while the device runs.
unsigned long telemetryIntervalMs = 10000;
// The DHT22 measures at most once every 2 s; faster requests return the same reading.
const unsigned long MIN_INTERVAL_MS = 2000;
const unsigned long MAX_INTERVAL_MS = 86400000UL;  // one day

// ---- State -----------------------------------------------------------------------------

// Waits longer after each failed attempt, so a broker or access point that is down
// is not hammered. All times are millis(); `now - last >= wait` is correct across the
// 49-day millis() wrap.
struct Backoff {
  unsigned long firstMs;
  unsigned long maxMs;
  unsigned long waitMs;
  unsigned long lastTry;
  bool tried;

  Backoff(unsigned long first, unsigned long max)
      : firstMs(first), maxMs(max), waitMs(first), lastTry(0), tried(false) {}

  bool due(unsigned long now) const { return !tried || now - lastTry >= waitMs; }

  // Call right before an attempt; the next one waits twice as long as this one did.
  void attempt(unsigned long now) {
    if (tried) waitMs = waitMs >= maxMs / 2 ? maxMs : waitMs * 2;
    // Up to 25% jitter, so devices that lost the broker together do not come back in step.
    waitMs += random(static_cast<long>(waitMs / 4 + 1));
    if (waitMs > maxMs) waitMs = maxMs;
    tried = true;
    lastTry = now;
  }

  void reset() {
    waitMs = firstMs;
    tried = false;
  }
};

WiFiClient net;
PubSubClient mqtt(net);
DHT dht(DHT_PIN, DHT22);

// Wi-Fi association plus DHCP takes a few seconds, so a retry sooner than 10 s would cut it short.
Backoff wifiBackoff(10000, 120000);
Backoff mqttBackoff(1000, 60000);
bool wifiWasConnected = false;
bool mqttWasConnected = false;
bool randomSeeded = false;

char topicStatus[96];
char topicTelemetry[96];
char topicCommands[96];

bool relayOn = false;
bool telemetryDue = false;  // set by a command: publish from loop(), not from the callback
unsigned long lastTelemetry = 0;

// ---- Relay -----------------------------------------------------------------------------

void setRelay(bool on) {
  relayOn = on;
  digitalWrite(RELAY_PIN, on != RELAY_ACTIVE_LOW ? HIGH : LOW);
}

// ---- Telemetry -------------------------------------------------------------------------

// One decimal as a double: a float such as 21.4f would otherwise print as 21.3999996.
double oneDecimal(float v) {
  return roundf(v * 10.0f) / 10.0;
}

void publishTelemetry() {
  float temperature = dht.readTemperature();  // °C; NaN when the sensor did not answer
  float humidity = dht.readHumidity();
  bool haveTemperature = !isnan(temperature);
  bool haveHumidity = !isnan(humidity);

  JsonDocument doc;
  // A NaN is left out rather than sent: JSON has no NaN, and a missing key keeps the
  // last good value on the dashboard.
  if (haveTemperature) doc["temperature"] = oneDecimal(temperature);
  if (haveHumidity) doc["humidity"] = oneDecimal(humidity);
  // A boolean is an on/off state to Pulseboard: the dashboard shows a switch for "relay".
  doc["relay"] = relayOn;
  doc["rssi"] = static_cast<int>(WiFi.RSSI());
  if (haveTemperature) doc["units"]["temperature"] = "°C";
  if (haveHumidity) doc["units"]["humidity"] = "%";
  doc["units"]["rssi"] = "dBm";

  char payload[256];
  size_t length = serializeJson(doc, payload, sizeof payload);
  if (!mqtt.publish(topicTelemetry, reinterpret_cast<const uint8_t*>(payload), length, false)) {
    Serial.println("telemetry publish failed");
  }
  if (!haveTemperature || !haveHumidity) {
    Serial.println("DHT22 read failed; check the wiring and the pull-up on the data pin");
  }
}

// ---- Commands --------------------------------------------------------------------------

// 1 for on, 0 for off, -1 when the value is not a relay state.
int relayValue(JsonVariantConst value) {
  if (value.is<bool>()) return value.as<bool>() ? 1 : 0;
  if (value.is<long>()) {
    long n = value.as<long>();
    return n == 1 ? 1 : n == 0 ? 0 : -1;
  }
  if (value.is<const char*>()) {
    const char* s = value.as<const char*>();
    if (strcasecmp(s, "ON") == 0 || strcasecmp(s, "true") == 0 || strcmp(s, "1") == 0) return 1;
    if (strcasecmp(s, "OFF") == 0 || strcasecmp(s, "false") == 0 || strcmp(s, "0") == 0) return 0;
    if (strcasecmp(s, "TOGGLE") == 0) return relayOn ? 0 : 1;
  }
  return -1;
}

void onMessage(char* topic, uint8_t* payload, unsigned int length) {
  if (strcmp(topic, topicCommands) != 0) return;

  JsonDocument doc;
  DeserializationError error = deserializeJson(doc, payload, length);
  if (error) {
    Serial.printf("command ignored: not JSON (%s)\n", error.c_str());
    return;
  }
  const char* name = doc["name"] | "";
  JsonVariantConst value = doc["value"];

  if (strcmp(name, "relay") == 0) {
    int on = relayValue(value);
    if (on < 0) {
      Serial.println("command ignored: relay takes true, false, 1, 0, \"ON\", \"OFF\" or \"TOGGLE\"");
      return;
    }
    setRelay(on == 1);
    // The dashboard learns the new state from telemetry. PubSubClient reuses one buffer for
    // the message being handled and the one being sent, so the publish waits for loop().
    telemetryDue = true;
  } else if (strcmp(name, "interval") == 0) {
    double ms = value.is<double>() ? value.as<double>() : -1;  // is<double>() accepts integers too
    if (!(ms >= MIN_INTERVAL_MS && ms <= MAX_INTERVAL_MS)) {
      Serial.printf("command ignored: interval must be %lu to %lu ms\n", MIN_INTERVAL_MS, MAX_INTERVAL_MS);
      return;
    }
    telemetryIntervalMs = static_cast<unsigned long>(ms + 0.5);
    lastTelemetry = millis();  // the next publish comes one new interval from now
    Serial.printf("interval is now %lu ms\n", telemetryIntervalMs);
  } else {
    Serial.printf("command ignored: unknown name \"%s\"\n", name);
  }
}

// ---- Connections -----------------------------------------------------------------------

void maintainWifi(unsigned long now) {
  if (WiFi.status() == WL_CONNECTED) {
    if (!wifiWasConnected) {
      wifiWasConnected = true;
      wifiBackoff.reset();
      Serial.print("Wi-Fi connected, IP ");
      Serial.println(WiFi.localIP());
      if (!randomSeeded) {
        // How long association took differs per device: enough to spread the backoff jitter.
        randomSeed(micros());
        randomSeeded = true;
      }
    }
    return;
  }
  if (wifiWasConnected) {
    wifiWasConnected = false;
    Serial.println("Wi-Fi lost");
  }
  if (!wifiBackoff.due(now)) return;
  wifiBackoff.attempt(now);
  Serial.printf("connecting to Wi-Fi \"%s\"; next try in %lu s\n", WIFI_SSID, wifiBackoff.waitMs / 1000);
  WiFi.disconnect();
  WiFi.begin(WIFI_SSID, WIFI_PASSWORD);
}

void maintainMqtt(unsigned long now) {
  if (mqtt.connected()) {
    mqtt.loop();  // reads commands (onMessage) and answers the broker's keepalive
    return;
  }
  if (mqttWasConnected) {
    mqttWasConnected = false;
    mqttBackoff.reset();
    Serial.printf("MQTT connection lost (state %d)\n", mqtt.state());
  }
  if (!mqttBackoff.due(now)) return;
  mqttBackoff.attempt(now);

  // connect() blocks until the broker answers or the socket timeout passes; that is the
  // one wait in the sketch, and setup() keeps it short.
  const char* user = MQTT_USER[0] != '\0' ? MQTT_USER : nullptr;
  const char* password = MQTT_PASSWORD[0] != '\0' ? MQTT_PASSWORD : nullptr;
  // The broker publishes the will when the connection drops without a DISCONNECT
  // [MQTT-3.1.2-8], retained [MQTT-3.1.2-17], so a subscriber that comes later still
  // reads "offline".
  if (!mqtt.connect(DEVICE_ID, user, password, topicStatus, 1, true, "offline")) {
    Serial.printf("MQTT connect to %s:%u failed (state %d); next try in %lu s\n", MQTT_HOST, MQTT_PORT,
                  mqtt.state(), mqttBackoff.waitMs / 1000);
    return;
  }
  mqttWasConnected = true;
  mqttBackoff.reset();
  Serial.printf("MQTT connected to %s:%u as %s\n", MQTT_HOST, MQTT_PORT, DEVICE_ID);

  // Retained, so it replaces the "offline" will the broker may still hold from the last drop.
  // PubSubClient publishes at QoS 0 only.
  mqtt.publish(topicStatus, "online", true);
  mqtt.subscribe(topicCommands, 1);
  telemetryDue = true;  // values on the dashboard now, not one interval from now
}

// ---- Arduino ---------------------------------------------------------------------------

void setup() {
  Serial.begin(115200);
  Serial.println();

  pinMode(RELAY_PIN, OUTPUT);
  setRelay(false);
  dht.begin();

  snprintf(topicStatus, sizeof topicStatus, "devices/%s/status", DEVICE_ID);
  snprintf(topicTelemetry, sizeof topicTelemetry, "devices/%s/telemetry", DEVICE_ID);
  snprintf(topicCommands, sizeof topicCommands, "devices/%s/commands", DEVICE_ID);

  // Credentials come from the sketch on every boot; without this each WiFi.begin() writes flash.
  WiFi.persistent(false);
  WiFi.mode(WIFI_STA);

  mqtt.setServer(MQTT_HOST, MQTT_PORT);
  mqtt.setCallback(onMessage);
  // The default 256-byte buffer holds the whole packet, topic included; the telemetry JSON
  // with its units object comes close to that.
  if (!mqtt.setBufferSize(512)) Serial.println("could not allocate the MQTT buffer");
  // The broker takes a device as gone after 1.5x the keepalive without a packet.
  mqtt.setKeepAlive(15);
  // Bounds how long connect() waits for the broker's CONNACK.
  mqtt.setSocketTimeout(5);
}

void loop() {
  maintainWifi(millis());
  if (WiFi.status() == WL_CONNECTED) maintainMqtt(millis());

  // Read the clock after mqtt.loop(): a command may have just set lastTelemetry.
  unsigned long now = millis();
  if (mqtt.connected() && (telemetryDue || now - lastTelemetry >= telemetryIntervalMs)) {
    telemetryDue = false;
    lastTelemetry = now;
    publishTelemetry();
  }
}
