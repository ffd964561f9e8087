/*
 * Skylift's plugin for Mosquitto 2.0: devices log in through Skylift, speak only on their own topics,
 * and Skylift hears when they connect, subscribe and leave.
 *
 * - A CONNECT is checked by Skylift (POST to `auth_url`, which answers with the device's topic rules),
 *   so every login style Skylift knows works unchanged: tokens with any password, device secrets, and
 *   Alibaba's signed logins. Skylift's own connection logs in with `service_username` and
 *   `service_password` and may do anything.
 * - Every PUBLISH, SUBSCRIBE and delivery of a device is checked against the rules of its login: exact
 *   topics and prefix rules (with or without a given ending). What a device publishes is never kept as
 *   a retained message (Skylift would hear it again at each of its subscriptions), and its Will passes
 *   the same check as any PUBLISH when the broker sends it.
 * - Connections, subscriptions, unsubscriptions and disconnections are published on `$skylift/events`
 *   (QoS 1) for Skylift's persistent session; a connection replaced by a newer one with the same client
 *   id leaves no event.
 * - Devices that never subscribe (Alibaba's SDKs with `_ss=1` in the client id) are sent what Skylift
 *   publishes on their downlink topics directly, as if the broker had subscribed them.
 * - A client with a kept session (clean session off) keeps its filters across connections, as the
 *   broker does: they are announced again when it comes back.
 * - `$CONTROL/skylift/v1` takes Skylift's commands: {"command": "kick", "client_ids": [...]} closes
 *   connections; {"command": "snapshot"} publishes every device connection with its filters (Skylift
 *   asks at each connection of its own, since it may have missed events while it was away).
 *
 * Options: plugin_opt_auth_url, plugin_opt_service_username, plugin_opt_service_password,
 * plugin_opt_auth_timeout_ms (default 5000).
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <uthash.h>

#include "skylift_rules.h"

#define EVENTS_TOPIC "$skylift/events"
#define CONTROL_TOPIC "$CONTROL/skylift/v1"
#define MAX_ANSWER_BYTES (256 * 1024)

struct conn {
	char *client_id;
	const struct mosquitto *context; /* the live connection this login belongs to */
	char *username;
	bool service;
	bool auto_subscribe;
	struct rules publish, read, own;
	struct filters filters;
	struct filters auto_topics; /* its routes, when it never subscribes */
	UT_hash_handle hh;
};

struct kept { /* the filters of a session kept by the broker while its client is away */
	char *client_id;
	struct filters filters;
	UT_hash_handle hh;
};

struct route { /* a downlink topic of a device that never subscribes -> its client id */
	char *topic;
	char *client_id;
	UT_hash_handle hh;
};

struct answer {
	char *data;
	size_t size;
};

static mosquitto_plugin_id_t *plugin_id;
static char *auth_url, *service_username, *service_password;
static long auth_timeout_ms = 5000;
static CURL *curl;
static struct conn *conns;
static struct route *routes;
static struct kept *kept_sessions;

static bool same_secret(const char *given, const char *expected)
{
	size_t n = strlen(given), m = strlen(expected);
	unsigned char diff = (unsigned char)(n != m);
	for (size_t i = 0; i < m; i++) diff |= (unsigned char)(expected[i] ^ (i < n ? given[i] : 0));
	return diff == 0;
}

static cJSON *describe(const char *kind, const struct conn *conn)
{
	cJSON *event = cJSON_CreateObject();
	if (kind) cJSON_AddStringToObject(event, "event", kind);
	cJSON_AddStringToObject(event, "client_id", conn->client_id);
	cJSON_AddStringToObject(event, "username", conn->username ? conn->username : "");
	return event;
}

static void send_event(cJSON *event)
{
	char *text = cJSON_PrintUnformatted(event);
	if (text) {
		mosquitto_broker_publish_copy(NULL, EVENTS_TOPIC, (int)strlen(text), text, 1, false, NULL);
		free(text);
	}
	cJSON_Delete(event);
}

static void publish_event(const char *kind, const struct conn *conn, const char *filter)
{
	cJSON *event = describe(kind, conn);
	if (filter) cJSON_AddStringToObject(event, "filter", filter);
	if (strcmp(kind, "connect") == 0) cJSON_AddBoolToObject(event, "auto_subscribe", conn->auto_subscribe);
	send_event(event);
}

static void publish_snapshot(void)
{
	cJSON *event = cJSON_CreateObject();
	cJSON_AddStringToObject(event, "event", "snapshot");
	cJSON *clients = cJSON_AddArrayToObject(event, "clients");
	struct conn *conn, *next;
	HASH_ITER(hh, conns, conn, next) {
		if (conn->service) continue;
		cJSON *client = describe(NULL, conn);
		cJSON_AddBoolToObject(client, "auto_subscribe", conn->auto_subscribe);
		cJSON *filters = cJSON_AddArrayToObject(client, "filters");
		for (int i = 0; i < conn->filters.count; i++) cJSON_AddItemToArray(filters, cJSON_CreateString(conn->filters.items[i]));
		cJSON_AddItemToArray(clients, client);
	}
	send_event(event);
}

static void drop_routes_of(struct conn *conn)
{
	for (int i = 0; i < conn->auto_topics.count; i++) {
		struct route *route = NULL;
		HASH_FIND_STR(routes, conn->auto_topics.items[i], route);
		if (route && strcmp(route->client_id, conn->client_id) == 0) {
			HASH_DEL(routes, route);
			mosquitto_free(route->topic);
			mosquitto_free(route->client_id);
			mosquitto_free(route);
		}
	}
	sky_free_filters(&conn->auto_topics);
}

static void drop_kept(const char *client_id)
{
	struct kept *kept = NULL;
	HASH_FIND_STR(kept_sessions, client_id, kept);
	if (kept) {
		HASH_DEL(kept_sessions, kept);
		sky_free_filters(&kept->filters);
		mosquitto_free(kept->client_id);
		mosquitto_free(kept);
	}
}

/* The connection is gone; a kept session keeps its filters for the client's return. */
static void forget(struct conn *conn, bool keep_session)
{
	HASH_DEL(conns, conn);
	drop_routes_of(conn);
	drop_kept(conn->client_id);
	if (keep_session && conn->filters.count) {
		struct kept *kept = mosquitto_calloc(1, sizeof(struct kept));
		if (kept) {
			kept->client_id = sky_copy(conn->client_id);
			kept->filters = conn->filters;
			conn->filters.items = NULL;
			conn->filters.count = 0;
			HASH_ADD_KEYPTR(hh, kept_sessions, kept->client_id, strlen(kept->client_id), kept);
		}
	}
	sky_free_filters(&conn->filters);
	sky_free_rules(&conn->publish);
	sky_free_rules(&conn->read);
	sky_free_rules(&conn->own);
	mosquitto_free(conn->client_id);
	mosquitto_free(conn->username);
	mosquitto_free(conn);
}

static size_t collect(char *data, size_t size, size_t count, void *target)
{
	struct answer *answer = target;
	size_t n = size * count;
	if (answer->size + n > MAX_ANSWER_BYTES) return 0;
	char *grown = realloc(answer->data, answer->size + n + 1);
	if (!grown) return 0;
	answer->data = grown;
	memcpy(answer->data + answer->size, data, n);
	answer->size += n;
	answer->data[answer->size] = '\0';
	return n;
}

/* Skylift's verdict on a device login: the JSON object it answered, or NULL (refused or unreachable). */
static cJSON *ask_skylift(const char *username, const char *password, const char *client_id)
{
	cJSON *request = cJSON_CreateObject();
	cJSON_AddStringToObject(request, "username", username);
	cJSON_AddStringToObject(request, "password", password ? password : "");
	cJSON_AddStringToObject(request, "client_id", client_id ? client_id : "");
	char *body = cJSON_PrintUnformatted(request);
	cJSON_Delete(request);
	if (!body) return NULL;
	char bearer[1024];
	snprintf(bearer, sizeof bearer, "Authorization: Bearer %s", service_password);
	struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
	headers = curl_slist_append(headers, bearer);
	struct answer answer = {NULL, 0};
	curl_easy_setopt(curl, CURLOPT_URL, auth_url);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &answer);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, auth_timeout_ms);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	CURLcode result = curl_easy_perform(curl);
	long status = 0;
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(headers);
	free(body);
	cJSON *verdict = NULL;
	if (result != CURLE_OK || status != 200) {
		mosquitto_log_printf(MOSQ_LOG_WARNING, "skylift: login check failed (%s, HTTP %ld)",
				result != CURLE_OK ? curl_easy_strerror(result) : "answered", status);
	} else if (answer.data) {
		verdict = cJSON_Parse(answer.data);
	}
	free(answer.data);
	if (verdict && !cJSON_IsTrue(cJSON_GetObjectItem(verdict, "allow"))) {
		cJSON_Delete(verdict);
		verdict = NULL;
	}
	return verdict;
}

static struct conn *remember(struct mosquitto *client, const char *username, bool service, const cJSON *verdict)
{
	const char *client_id = mosquitto_client_id(client);
	struct conn *old = NULL;
	HASH_FIND_STR(conns, client_id, old);
	if (old) forget(old, !mosquitto_client_clean_session(client)); /* this login replaces the other */
	struct conn *conn = mosquitto_calloc(1, sizeof(struct conn));
	if (!conn) return NULL;
	conn->client_id = sky_copy(client_id);
	conn->username = sky_copy(username);
	conn->context = client;
	conn->service = service;
	if (verdict) {
		conn->auto_subscribe = cJSON_IsTrue(cJSON_GetObjectItem(verdict, "auto_subscribe"));
		sky_read_rules(cJSON_GetObjectItem(verdict, "publish"), &conn->publish);
		sky_read_rules(cJSON_GetObjectItem(verdict, "read"), &conn->read);
		sky_read_rules(cJSON_GetObjectItem(verdict, "own"), &conn->own);
		const cJSON *topics = cJSON_GetObjectItem(verdict, "auto_topics");
		for (int i = 0; conn->auto_subscribe && i < cJSON_GetArraySize(topics); i++) {
			const cJSON *topic = cJSON_GetArrayItem(topics, i);
			if (!cJSON_IsString(topic)) continue;
			struct route *route = NULL;
			HASH_FIND_STR(routes, topic->valuestring, route);
			if (route) { /* another connection of the same device: the newest one hears */
				mosquitto_free(route->client_id);
			} else {
				route = mosquitto_calloc(1, sizeof(struct route));
				if (!route) continue;
				route->topic = sky_copy(topic->valuestring);
				HASH_ADD_KEYPTR(hh, routes, route->topic, strlen(route->topic), route);
			}
			route->client_id = sky_copy(client_id);
			sky_add_filter(&conn->auto_topics, topic->valuestring);
		}
	}
	struct kept *kept = NULL;
	HASH_FIND_STR(kept_sessions, client_id, kept);
	if (kept && !mosquitto_client_clean_session(client)) {
		conn->filters = kept->filters;
		kept->filters.items = NULL;
		kept->filters.count = 0;
	}
	drop_kept(client_id);
	HASH_ADD_KEYPTR(hh, conns, conn->client_id, strlen(conn->client_id), conn);
	return conn;
}

static struct conn *conn_of(const struct mosquitto *client)
{
	const char *client_id = mosquitto_client_id(client);
	struct conn *conn = NULL;
	if (client_id) HASH_FIND_STR(conns, client_id, conn);
	return conn && conn->context == client ? conn : NULL;
}

static int on_basic_auth(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_basic_auth *auth = event_data;
	(void)event;
	(void)userdata;
	if (!auth->username || !mosquitto_client_id(auth->client)) return MOSQ_ERR_AUTH;
	if (strcmp(auth->username, service_username) == 0) {
		if (!auth->password || !same_secret(auth->password, service_password)) return MOSQ_ERR_AUTH;
		return remember(auth->client, auth->username, true, NULL) ? MOSQ_ERR_SUCCESS : MOSQ_ERR_NOMEM;
	}
	cJSON *verdict = ask_skylift(auth->username, auth->password, mosquitto_client_id(auth->client));
	if (!verdict) return MOSQ_ERR_AUTH;
	struct conn *conn = remember(auth->client, auth->username, false, verdict);
	cJSON_Delete(verdict);
	if (!conn) return MOSQ_ERR_NOMEM;
	publish_event("connect", conn, NULL);
	for (int i = 0; i < conn->filters.count; i++) publish_event("subscribe", conn, conn->filters.items[i]);
	return MOSQ_ERR_SUCCESS;
}

static int on_acl_check(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_acl_check *check = event_data;
	(void)event;
	(void)userdata;
	struct conn *conn = conn_of(check->client);
	if (!conn) {
		/* Skylift's session while it is away: what it subscribed to is kept for it. */
		const char *username = mosquitto_client_username(check->client);
		bool service = username && strcmp(username, service_username) == 0 && check->access == MOSQ_ACL_READ;
		return service ? MOSQ_ERR_SUCCESS : MOSQ_ERR_ACL_DENIED;
	}
	if (conn->service) return MOSQ_ERR_SUCCESS;
	switch (check->access) {
	case MOSQ_ACL_WRITE:
		return sky_any_rule_matches(&conn->publish, check->topic) ? MOSQ_ERR_SUCCESS : MOSQ_ERR_ACL_DENIED;
	case MOSQ_ACL_READ:
		return sky_any_rule_matches(&conn->read, check->topic) ? MOSQ_ERR_SUCCESS : MOSQ_ERR_ACL_DENIED;
	case MOSQ_ACL_SUBSCRIBE:
		if (!sky_may_subscribe(&conn->own, check->topic)) return MOSQ_ERR_ACL_DENIED;
		sky_add_filter(&conn->filters, check->topic);
		publish_event("subscribe", conn, check->topic);
		return MOSQ_ERR_SUCCESS;
	case MOSQ_ACL_UNSUBSCRIBE:
		sky_remove_filter(&conn->filters, check->topic);
		publish_event("unsubscribe", conn, check->topic);
		return MOSQ_ERR_SUCCESS;
	default:
		return MOSQ_ERR_ACL_DENIED;
	}
}

static int on_disconnect(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_disconnect *gone = event_data;
	(void)event;
	(void)userdata;
	struct conn *conn = conn_of(gone->client);
	if (conn) { /* not a connection replaced by a newer one under its client id */
		if (!conn->service) publish_event("disconnect", conn, NULL);
		forget(conn, !mosquitto_client_clean_session(gone->client));
	}
	return MOSQ_ERR_SUCCESS;
}

/* A device's message is relayed, never retained. What Skylift publishes on the downlink topic of a device
 * that never subscribes goes to it directly. */
static int on_message(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_message *message = event_data;
	(void)event;
	(void)userdata;
	struct conn *sender = conn_of(message->client);
	if (!sender) return MOSQ_ERR_ACL_DENIED;
	if (!sender->service) {
		message->retain = false;
		return MOSQ_ERR_SUCCESS;
	}
	if (!routes) return MOSQ_ERR_SUCCESS;
	struct route *route = NULL;
	HASH_FIND_STR(routes, message->topic, route);
	if (!route) return MOSQ_ERR_SUCCESS;
	struct conn *device = NULL;
	HASH_FIND_STR(conns, route->client_id, device);
	/* One that subscribed after all hears through its subscriptions (once). */
	if (device && mosquitto_client_sub_count(device->context) == 0) {
		mosquitto_broker_publish_copy(device->client_id, message->topic, (int)message->payloadlen, message->payload,
				message->qos, false, NULL);
	}
	return MOSQ_ERR_SUCCESS;
}

static int on_control(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_control *control = event_data;
	(void)event;
	(void)userdata;
	struct conn *sender = conn_of(control->client);
	if (!sender || !sender->service) return MOSQ_ERR_ACL_DENIED;
	cJSON *command = cJSON_ParseWithLength(control->payload, control->payloadlen);
	const cJSON *name = cJSON_GetObjectItem(command, "command");
	if (cJSON_IsString(name) && strcmp(name->valuestring, "kick") == 0) {
		const cJSON *ids = cJSON_GetObjectItem(command, "client_ids");
		for (int i = 0; i < cJSON_GetArraySize(ids); i++) {
			const cJSON *id = cJSON_GetArrayItem(ids, i);
			if (cJSON_IsString(id)) mosquitto_kick_client_by_clientid(id->valuestring, false);
		}
	} else if (cJSON_IsString(name) && strcmp(name->valuestring, "snapshot") == 0) {
		publish_snapshot();
	} else {
		mosquitto_log_printf(MOSQ_LOG_WARNING, "skylift: unknown control command");
	}
	cJSON_Delete(command);
	return MOSQ_ERR_SUCCESS;
}

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	(void)supported_version_count;
	(void)supported_versions;
	return 5;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata, struct mosquitto_opt *options,
		int option_count)
{
	(void)userdata;
	plugin_id = identifier;
	for (int i = 0; i < option_count; i++) {
		if (strcmp(options[i].key, "auth_url") == 0) auth_url = options[i].value;
		if (strcmp(options[i].key, "service_username") == 0) service_username = options[i].value;
		if (strcmp(options[i].key, "service_password") == 0) service_password = options[i].value;
		if (strcmp(options[i].key, "auth_timeout_ms") == 0) auth_timeout_ms = strtol(options[i].value, NULL, 10);
	}
	if (!auth_url || !service_username || !service_password || strlen(service_password) < 16) {
		mosquitto_log_printf(MOSQ_LOG_ERR,
				"skylift: plugin_opt_auth_url, plugin_opt_service_username and plugin_opt_service_password "
				"(16 characters or more) are needed");
		return MOSQ_ERR_INVAL;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	curl = curl_easy_init();
	if (!curl) return MOSQ_ERR_UNKNOWN;
	int rc = mosquitto_callback_register(plugin_id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL, NULL);
	if (!rc) rc = mosquitto_callback_register(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL, NULL);
	if (!rc) rc = mosquitto_callback_register(plugin_id, MOSQ_EVT_DISCONNECT, on_disconnect, NULL, NULL);
	if (!rc) rc = mosquitto_callback_register(plugin_id, MOSQ_EVT_MESSAGE, on_message, NULL, NULL);
	if (!rc) rc = mosquitto_callback_register(plugin_id, MOSQ_EVT_CONTROL, on_control, CONTROL_TOPIC, NULL);
	return rc;
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count)
{
	(void)userdata;
	(void)options;
	(void)option_count;
	struct conn *conn, *next;
	HASH_ITER(hh, conns, conn, next) forget(conn, false);
	struct kept *kept, *kept_next;
	HASH_ITER(hh, kept_sessions, kept, kept_next) drop_kept(kept->client_id);
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL);
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL);
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_DISCONNECT, on_disconnect, NULL);
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_MESSAGE, on_message, NULL);
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_CONTROL, on_control, CONTROL_TOPIC);
	curl_easy_cleanup(curl);
	curl_global_cleanup();
	return MOSQ_ERR_SUCCESS;
}
