/*
 * status.h - what the metadata store and the hydration engine report about
 * themselves. The clone policy passes these up in its status; they live
 * here so that its callers (the front end, control) include neither layer.
 */
#ifndef CLONEFS_STATUS_H
#define CLONEFS_STATUS_H

#include <stdbool.h>
#include <stdint.h>

enum md_mode {
	MD_MODE_RW,   /* normal */
	MD_MODE_RO,   /* a commit failed; rolled back, no new bits (spec 4.6) */
	MD_MODE_FAIL, /* state unknown; status prints "Fail" */
};

struct hydrate_stats {
	uint64_t in_flight;     /* regions being copied now */
	uint64_t copied_bytes;  /* bytes read from SOURCE by copies */
	uint64_t copy_errors;   /* failed copies since mount, write-triggered
				 * ones included */
	uint64_t read_errors;   /* reads of the image that SOURCE failed */
	double rate;            /* bytes/s of background copying, recent */
	bool enabled;
	bool copy_on_read;
	uint32_t threshold;
	uint32_t batch_size;
	uint64_t rate_limit;    /* bytes/s, 0 = unlimited */
	bool read_hints;
	uint64_t hint_copies;   /* background copies a read asked for */
	uint64_t hint_regions;  /* the regions they copied */
	uint64_t prefetch_total;    /* regions in the prefetch profile */
	uint64_t prefetch_hydrated; /* of those, hydrated */
	char last_error[160];
};

#endif
