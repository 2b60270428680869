/** Custom search attributes set on every runbook, so operators can filter the Temporal UI. */
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

export const SERVICE_ATTR = defineSearchAttributeKey('Service', SearchAttributeType.KEYWORD);
export const RUNBOOK_ATTR = defineSearchAttributeKey('Runbook', SearchAttributeType.KEYWORD);

/** Names and types, as `temporal server start-dev --search-attribute` wants them. */
export const SEARCH_ATTRIBUTE_FLAGS = ['Service=Keyword', 'Runbook=Keyword'];
