/* Topic rules and filter lists of Skylift's Mosquitto plugin (see skylift_plugin.c). */
#ifndef SKYLIFT_RULES_H
#define SKYLIFT_RULES_H

#include <stdbool.h>

#include <cjson/cJSON.h>

struct rule {
	char *exact;  /* the whole topic, or NULL for a prefix rule */
	char *prefix; /* a topic that starts with this ... */
	char *suffix; /* ... and ends with this (NULL: anything) ... */
	bool without_suffix; /* ... or, when set, does not end with it */
};

struct rules {
	struct rule *items;
	int count;
};

struct filters {
	char **items;
	int count;
};

char *sky_copy(const char *text);
bool sky_ends_with(const char *text, const char *suffix);
void sky_free_rules(struct rules *rules);
void sky_read_rules(const cJSON *list, struct rules *rules);
bool sky_any_rule_matches(const struct rules *rules, const char *topic);
bool sky_may_subscribe(const struct rules *own, const char *filter);
void sky_free_filters(struct filters *filters);
void sky_add_filter(struct filters *filters, const char *filter);
void sky_remove_filter(struct filters *filters, const char *filter);

#endif
