/* Topic rules and filter lists of Skylift's Mosquitto plugin: a rule is a whole topic, or a prefix with
 * or without a given ending; a device may subscribe to any filter that can match one of its own topics. */
#include <stdlib.h>
#include <string.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>

#include "skylift_rules.h"

char *sky_copy(const char *text)
{
	return text ? mosquitto_strdup(text) : NULL;
}

bool sky_ends_with(const char *text, const char *suffix)
{
	size_t n = strlen(text), m = strlen(suffix);
	return n >= m && memcmp(text + n - m, suffix, m) == 0;
}

void sky_free_rules(struct rules *rules)
{
	for (int i = 0; i < rules->count; i++) {
		mosquitto_free(rules->items[i].exact);
		mosquitto_free(rules->items[i].prefix);
		mosquitto_free(rules->items[i].suffix);
	}
	mosquitto_free(rules->items);
	rules->items = NULL;
	rules->count = 0;
}

void sky_free_filters(struct filters *filters)
{
	for (int i = 0; i < filters->count; i++) mosquitto_free(filters->items[i]);
	mosquitto_free(filters->items);
	filters->items = NULL;
	filters->count = 0;
}

void sky_add_filter(struct filters *filters, const char *filter)
{
	for (int i = 0; i < filters->count; i++) {
		if (strcmp(filters->items[i], filter) == 0) return;
	}
	char **grown = mosquitto_realloc(filters->items, sizeof(char *) * (size_t)(filters->count + 1));
	if (!grown) return;
	filters->items = grown;
	filters->items[filters->count] = sky_copy(filter);
	if (filters->items[filters->count]) filters->count++;
}

void sky_remove_filter(struct filters *filters, const char *filter)
{
	for (int i = 0; i < filters->count; i++) {
		if (strcmp(filters->items[i], filter) == 0) {
			mosquitto_free(filters->items[i]);
			filters->items[i] = filters->items[--filters->count];
			return;
		}
	}
}

void sky_read_rules(const cJSON *list, struct rules *rules)
{
	int n = cJSON_IsArray(list) ? cJSON_GetArraySize(list) : 0;
	rules->items = n ? mosquitto_calloc((size_t)n, sizeof(struct rule)) : NULL;
	rules->count = 0;
	for (int i = 0; i < n && rules->items; i++) {
		const cJSON *item = cJSON_GetArrayItem(list, i);
		struct rule *rule = &rules->items[rules->count];
		if (cJSON_IsString(item)) {
			rule->exact = sky_copy(item->valuestring);
		} else if (cJSON_IsString(cJSON_GetObjectItem(item, "prefix"))) {
			const cJSON *ending = cJSON_GetObjectItem(item, "suffix");
			const cJSON *without = cJSON_GetObjectItem(item, "without_suffix");
			rule->prefix = sky_copy(cJSON_GetObjectItem(item, "prefix")->valuestring);
			if (cJSON_IsString(without)) {
				rule->suffix = sky_copy(without->valuestring);
				rule->without_suffix = true;
			} else if (cJSON_IsString(ending)) {
				rule->suffix = sky_copy(ending->valuestring);
			}
		} else {
			continue;
		}
		rules->count++;
	}
}

static bool rule_matches(const struct rule *rule, const char *topic)
{
	if (rule->exact) return strcmp(rule->exact, topic) == 0;
	size_t n = strlen(rule->prefix);
	if (strncmp(topic, rule->prefix, n) != 0 || strlen(topic) == n) return false;
	if (!rule->suffix) return true;
	return sky_ends_with(topic, rule->suffix) != rule->without_suffix;
}

bool sky_any_rule_matches(const struct rules *rules, const char *topic)
{
	for (int i = 0; i < rules->count; i++) {
		if (rule_matches(&rules->items[i], topic)) return true;
	}
	return false;
}

/* Whether `filter` matches some topic `{prefix}/{at least one more level}` (prefix without its '/'). */
static bool matches_below(const char *filter, const char *prefix)
{
	const char *f = filter, *p = prefix;
	while (*p) {
		const char *f_end = strchr(f, '/'), *p_end = strchr(p, '/');
		size_t f_len = f_end ? (size_t)(f_end - f) : strlen(f);
		size_t p_len = p_end ? (size_t)(p_end - p) : strlen(p);
		if (f_len == 1 && f[0] == '#') return true;
		if (!(f_len == 1 && f[0] == '+') && (f_len != p_len || strncmp(f, p, f_len) != 0)) return false;
		if (!f_end) return false; /* the filter ends at or before the prefix's last level */
		f = f_end + 1;
		p = p_end ? p_end + 1 : p + p_len;
	}
	return true; /* the filter has at least one level beyond the prefix */
}

/* Any filter that can match one of the device's own topics is granted; delivery is checked per message. */
bool sky_may_subscribe(const struct rules *own, const char *filter)
{
	bool wildcard = strpbrk(filter, "+#") != NULL;
	for (int i = 0; i < own->count; i++) {
		const struct rule *rule = &own->items[i];
		if (!wildcard) {
			if (rule_matches(rule, filter)) return true;
		} else if (rule->exact) {
			bool result = false;
			if (mosquitto_topic_matches_sub(filter, rule->exact, &result) == MOSQ_ERR_SUCCESS && result) return true;
		} else {
			char *prefix = sky_copy(rule->prefix);
			size_t n = prefix ? strlen(prefix) : 0;
			if (n && prefix[n - 1] == '/') prefix[n - 1] = '\0';
			bool below = prefix && matches_below(filter, prefix);
			mosquitto_free(prefix);
			if (below) return true;
		}
	}
	return false;
}
